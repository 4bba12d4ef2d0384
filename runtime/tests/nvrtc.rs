//! Every CUDA kernel source compiles with NVRTC, on a machine without a GPU: a syntax or type
//! error in a `.cu` file fails here, not at run time on a GPU.
//!
//! NVRTC comes from the `nvidia-cuda-nvrtc` Python wheel or a CUDA toolkit; point
//! `LD_LIBRARY_PATH` at the folder holding `libnvrtc.so.13`. Without the library the test says
//! so and passes, unless `STATICNET_REQUIRE_NVRTC` is set (as CI sets it), where it fails.

#![cfg(feature = "cuda")]

use staticnet_runtime::backend::cuda::{compile_kernels, kernel_names, nvrtc_version, sources};

/// The architectures we compile for: the H100 (sm_90) we run on, and an older and a newer one,
/// so that code relying on one generation's features shows up.
const ARCHES: [&str; 3] = ["sm_80", "sm_90", "sm_100"];

#[test]
fn every_kernel_source_compiles() {
    let version = match nvrtc_version() {
        Ok(v) => v,
        Err(e) => {
            assert!(std::env::var_os("STATICNET_REQUIRE_NVRTC").is_none(), "STATICNET_REQUIRE_NVRTC is set, but NVRTC cannot be loaded: {e}");
            skipped("every_kernel_source_compiles", &e.to_string());
            return;
        }
    };
    eprintln!("NVRTC {}.{}", version.0, version.1);
    for arch in ARCHES {
        let cubin = compile_kernels(arch).unwrap_or_else(|e| panic!("{arch}: {e}"));
        // The backend loads its kernels by name: each must be an entry of the compiled program
        // (the ELF symbol table of a CUBIN holds the names as they are, `extern "C"`).
        let names = kernel_names();
        let missing: Vec<&str> = names.iter().copied().filter(|name| !contains(&cubin, name.as_bytes())).collect();
        assert!(missing.is_empty(), "{arch}: kernels the backend loads but the sources do not define: {missing:?}");
        eprintln!("{arch}: {} kernels, {} bytes of CUBIN", names.len(), cubin.len());
    }
}

/// Every `ops/<op>/cuda.cu` on disk is one of the compiled sources, so a new one cannot be left
/// out of the program (and of the compile test above). Needs no NVRTC.
#[test]
fn every_cuda_source_is_compiled() {
    let ops = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ops");
    for entry in std::fs::read_dir(&ops).unwrap() {
        let file = entry.unwrap().path().join("cuda.cu");
        if file.exists() {
            let name = format!("ops/{}/cuda.cu", file.parent().unwrap().file_name().unwrap().to_string_lossy());
            let listed = sources().into_iter().find(|s| s.path == name).unwrap_or_else(|| panic!("{name} is not in ops::CUDA_SOURCES"));
            assert_eq!(listed.text, std::fs::read_to_string(&file).unwrap(), "{name}");
        }
    }
}

/// NVRTC refusing to compile is an error carrying its message, not a panic.
#[test]
fn a_compile_failure_is_an_error() {
    if nvrtc_version().is_err() {
        skipped("a_compile_failure_is_an_error", "NVRTC cannot be loaded");
        return;
    }
    let err = compile_kernels("sm_00").unwrap_err().to_string();
    assert!(err.contains("sm_00"), "{err}");
}

/// Says why a test is skipped, straight to stderr: the harness captures `eprintln!` of passing
/// tests, and a skip must be seen.
fn skipped(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every kernel a launcher in `ops/<op>/cuda.rs` launches is listed in a `Source`, so the device
/// loads it when it opens: a kernel left out would fail only on a GPU, at its first launch.
#[test]
fn every_launched_kernel_is_listed() {
    let listed = kernel_names();
    let ops = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ops");
    let mut launched = 0;
    for entry in std::fs::read_dir(&ops).unwrap() {
        let file = entry.unwrap().path().join("cuda.rs");
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        for (i, _) in text.match_indices("launch!(") {
            let args: Vec<&str> = text[i + "launch!(".len()..].splitn(3, ',').map(str::trim).collect();
            let name = args[1];
            assert!(listed.contains(&name), "{}: launches {name}, which no Source lists", file.display());
            launched += 1;
        }
    }
    assert!(launched > 20, "found only {launched} launches: has the launch! macro changed?");
}
