// Dropout2d drops whole channels of images; on a vector, PyTorch silently drops single features.
use staticnet::prelude::*;

network! {
    pub struct Net {
        input: [784],
        classifier: [Linear(784, 200), ReLU, Dropout2d(0.2), Linear(200, 10)],
    }
}

fn main() {}
