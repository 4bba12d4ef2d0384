//! Compile-time checking: every class of shape mistake is a compile error that points at the
//! culprit and says how to fix it (tests/ui/*.rs with the expected *.stderr), and every network
//! of the course compiles with PyTorch's parameter counts (tests/ui/pass/).
//!
//! The expected stderr is rustc's rendering, which can change between compiler versions;
//! regenerate it with `TRYBUILD=overwrite cargo test --test ui` and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
