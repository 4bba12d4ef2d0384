// A repetition needs at least one copy; the message quotes the count as written.
use staticnet::prelude::*;

network! {
    pub struct Net {
        input: [16],
        hidden: [Linear(16, 16); 2 - 2],
    }
}

fn main() {}
