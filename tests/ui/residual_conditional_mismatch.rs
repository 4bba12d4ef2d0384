// An inverted residual block whose sum is conditional, but on the stride only: where the width
// changes at stride 1, the sum is there and its shapes disagree.
use staticnet::prelude::*;

network! {
    block InvertedResidual(inp, oup, stride, expand_ratio) {
        let hidden_dim = inp * expand_ratio;
        conv: [
            [
                Conv2d(inp, hidden_dim, 1, bias = false),
                BatchNorm2d(hidden_dim),
                ReLU(inplace = true),
            ] if expand_ratio != 1,
            Conv2d(hidden_dim, hidden_dim, 3, stride, 1, bias = false),
            BatchNorm2d(hidden_dim),
            ReLU(inplace = true),
            Conv2d(hidden_dim, oup, 1, bias = false),
            BatchNorm2d(oup),
        ],
        + identity if stride == 1,
    }

    pub struct Net {
        input: [8, 16, 16],
        features: [
            InvertedResidual(8, 8, 1, 1),
            InvertedResidual(8, 16, 2, 6),
            InvertedResidual(16, 24, 1, 6),
        ],
    }
}

fn main() {}
