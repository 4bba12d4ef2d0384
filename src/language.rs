//! The language of [`network!`](crate::network!): what may be written inside it.
//!
//! A listing reads like PyTorch's `nn.Sequential`, with PyTorch's layer names, argument names,
//! positional order and defaults, so that a PyTorch definition ports line by line. Every shape
//! is computed at compile time; a layer that cannot take what flows into it is a compile error
//! that points at the culprit and says how to fix it, and all the errors of a listing are
//! reported together.
//!
//! # A network
//!
//! `struct Name { input: [...], layers... }`, with any attributes and doc comments before it and
//! any visibility. One `network!` may declare several networks and the blocks they use. The type
//! is generic over a backend, `Name<B = Cpu>`, and implements [`Network`](crate::Network).
//!
//! ```
//! use staticnet::prelude::*;
//!
//! network! {
//!     /// Model A of the course.
//!     pub struct ModelA {
//!         input: [1, 28, 28],
//!         cnn1: Conv2d(1, 16, kernel_size = 5, stride = 1, padding = 2),
//!         relu1: ReLU,
//!         maxpool1: MaxPool2d(2),
//!         Flatten,
//!         fc1: Linear(16 * 14 * 14, 10),
//!     }
//! }
//!
//! # fn main() -> staticnet::Result<()> {
//! let model = ModelA::new(&Cpu, 0)?;
//! assert_eq!(ModelA::<Cpu>::PARAMETERS, 16 * 25 + 16 + 3136 * 10 + 10);
//! assert_eq!(model.to_string().lines().nth(1), Some("  (cnn1): Conv2d(1, 16, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))"));
//! # Ok(())
//! # }
//! ```
//!
//! # Input
//!
//! The first line, `input: [...]`, is the shape of one sample; the batch size is chosen at run
//! time. It fixes the network's input type, so that data of another shape does not compile:
//!
//! | written | one sample | input type |
//! |---|---|---|
//! | `input: [C, H, W]` | an image, channels first (PyTorch's `[N, C, H, W]` without `N`) | [`Images<C, H, W>`](crate::Images) |
//! | `input: [F]` | a vector of `F` features | [`Vectors<F>`](crate::Vectors) |
//!
//! The output type follows from the last layer: `Vectors<10>` after `Linear(_, 10)`, `Images<…>`
//! after a convolution.
//!
//! ```
//! use staticnet::prelude::*;
//!
//! network! {
//!     pub struct Mlp {
//!         input: [784],
//!         fc: Linear(784, 10),
//!     }
//! }
//!
//! # fn main() -> staticnet::Result<()> {
//! let mut mlp = Mlp::new(&Cpu, 0)?;
//! let scores: Vectors<10> = mlp.forward(&Vectors::<784>::zeros(3))?;
//! assert_eq!(scores.len(), 3);
//! # Ok(())
//! # }
//! ```
//!
//! # Layers
//!
//! A layer is written as in PyTorch, with or without `nn.` in front (`nn.Conv2d(1, 16, 5)`),
//! and without parentheses when it takes no arguments (`ReLU`). Its arguments bind as Python
//! binds them: positional ones in PyTorch's order, then keywords (`padding = 2`), each at most
//! once, the rest taking PyTorch's default. These are all the layers the macro accepts (a test
//! compares this table with the macro's own signature table):
//!
//! | layer | arguments and PyTorch's defaults | what the macro checks |
//! |---|---|---|
//! | `Conv2d` | `in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True, padding_mode='zeros'` | an image input; `in_channels` equals the channels arriving; the dilated kernel fits the padded input; sizes at least 1; `padding` a size, a pair, `"valid"` or `"same"` (stride 1, odd kernel); `groups` at least 1 and dividing both `in_channels` and `out_channels` (the weight is (out, in/groups, kh, kw); `groups = in_channels = out_channels` is depthwise); `padding_mode` `'zeros'` only, for now |
//! | `Linear` | `in_features, out_features, bias=True` | a flat input (else: add `Flatten`); `in_features` equals the features arriving |
//! | `ReLU` | `inplace=False` | any shape; `inplace` changes nothing but the printed model |
//! | `LeakyReLU` | `negative_slope=0.01, inplace=False` | `negative_slope` is a number |
//! | `Sigmoid` | (none) | any shape |
//! | `Tanh` | (none) | any shape |
//! | `SiLU` | `inplace=False` | any shape |
//! | `ReLU6` | `inplace=False` | any shape |
//! | `Hardswish` | `inplace=False` | any shape |
//! | `GELU` | `approximate='none'` | any shape; `approximate` is `"none"` (erf) or `"tanh"` |
//! | `ELU` | `alpha=1.0, inplace=False` | `alpha` is a number |
//! | `Identity` | (none) | any shape; its output is its input |
//! | `MaxPool2d` | `kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False` | an image input; the window fits; `padding` at most half the (dilated) kernel, as PyTorch requires; `stride` None means the kernel size; `return_indices` False |
//! | `AvgPool2d` | `kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None` | as `MaxPool2d`; `divisor_override` None or at least 1 |
//! | `AdaptiveAvgPool2d` | `output_size` | an image input; an integer or a pair, where None keeps that side |
//! | `AdaptiveMaxPool2d` | `output_size, return_indices=False` | as `AdaptiveAvgPool2d`; `return_indices` False |
//! | `Flatten` | `start_dim=1, end_dim=-1` | only those: everything but the batch dimension into one |
//! | `Dropout` | `p=0.5, inplace=False` | `p` between 0 and 1 (1 zeroes everything) |
//! | `Dropout2d` | `p=0.5, inplace=False` | an image input (whole channels are dropped); `p` as `Dropout` |
//! | `BatchNorm2d` | `num_features, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True` | an image input; `num_features` equals the channels arriving; `eps` > 0; `momentum` in [0, 1] or None (a cumulative average); `bias` True only, for now |
//! | `BatchNorm1d` | `num_features, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True` | as `BatchNorm2d`, on a vector input |
//! | `Softmax` | `dim=None` | over the features or channels: `dim` None, 1, or -1 on vectors; a network ending in `Softmax` warns where it is trained with cross-entropy |
//! | `LogSoftmax` | `dim=None` | as `Softmax` |
//!
//! A misspelt layer gets a "did you mean" (`Relu` → `ReLU`), and a PyTorch layer staticnet does
//! not have yet (`Conv1d`, `LayerNorm`, …) says so.
//!
//! # Argument values
//!
//! An argument is an integer or an integer expression (`32 * 7 * 7`, with `+ - * / %`), a float
//! (`1e-3`), `true` / `false` (or Python's `True` / `False`), `None`, a pair `(3, 5)`, a string
//! (`"same"`), a block's parameter, or `_` (below). Everything is evaluated at compile time: a
//! variable of the program cannot be read.
//!
//! ```
//! use staticnet::prelude::*;
//!
//! network! {
//!     pub struct Values {
//!         input: [3, 32, 32],
//!         conv: Conv2d(3, 8, (3, 5), stride = (1, 1), padding = (1, 2), bias = False),
//!         bn: BatchNorm2d(8, eps = 1e-3, momentum = None),
//!         pool: MaxPool2d(kernel_size = 2),
//!         Flatten,
//!         fc: Linear(8 * 16 * 16, 10),
//!     }
//! }
//!
//! # fn main() -> staticnet::Result<()> {
//! let net = Values::new(&Cpu, 0)?;
//! assert!(net.to_string().contains("(bn): BatchNorm2d(8, eps=0.001, momentum=None, affine=True, bias=True, track_running_stats=True)"));
//! # Ok(())
//! # }
//! ```
//!
//! # `_`: sizes inferred from the input
//!
//! A size that the shape flowing in determines may be written `_`: `in_channels` of `Conv2d`,
//! `in_features` of `Linear`, `num_features` of the batch norms. The macro writes the number
//! itself; other arguments cannot be `_`.
//!
//! ```
//! use staticnet::prelude::*;
//!
//! network! {
//!     pub struct Inferred {
//!         input: [3, 32, 32],
//!         conv: Conv2d(_, 16, 3, padding = 1),
//!         bn: BatchNorm2d(_),
//!         relu: ReLU,
//!         Flatten,
//!         fc: Linear(_, 10),
//!     }
//! }
//!
//! # fn main() -> staticnet::Result<()> {
//! let net = Inferred::new(&Cpu, 0)?;
//! assert_eq!(net.parameter("fc.weight")?.shape(), [10, 16 * 32 * 32]);
//! # Ok(())
//! # }
//! ```
//!
//! # Names and indices
//!
//! A layer may be named (`cnn1: Conv2d(…)`), as an attribute of a PyTorch module is; an unnamed
//! one is named by its index in its listing, as in `nn.Sequential` (every entry counts, named or
//! not). Names become the parameter names and `state_dict` keys (`cnn1.weight`,
//! `features.3.running_mean`), so they must be unique within a listing.
//!
//! A layer named `_` is a functional op, no module: what a PyTorch `forward` calls as a function
//! (`torch.flatten(x, 1)`, `F.adaptive_avg_pool2d(x, 1)`) is written `_: Flatten`,
//! `_: AdaptiveAvgPool2d(1)`. It takes no index, `print(model)` does not show it, and it may not
//! hold state (a `Conv2d`, `Linear`, batch norm or block use is a module: name it or number it).
//! Its layer name, for [`Network::activation`](crate::Network::activation) and the like, is torch.fx's name
//! for the call: `flatten`, `adaptive_avg_pool2d` (`flatten_1` for a second one).
//!
//! ```
//! use staticnet::prelude::*;
//!
//! network! {
//!     pub struct Named {
//!         input: [1, 8, 8],
//!         conv: Conv2d(1, 4, 3),
//!         ReLU,
//!         Flatten,
//!         nn.Linear(4 * 6 * 6, 2),
//!     }
//! }
//!
//! # fn main() -> staticnet::Result<()> {
//! let net = Named::new(&Cpu, 0)?;
//! let keys: Vec<String> = net.state_dict()?.keys().map(|k| k.to_string()).collect();
//! assert_eq!(keys, ["conv.weight", "conv.bias", "3.weight", "3.bias"]);
//! # Ok(())
//! # }
//! ```
//!
//! With the flatten written as PyTorch's `forward` would call it, the linear layer is `2`:
//!
//! ```
//! use staticnet::prelude::*;
//!
//! network! {
//!     pub struct Functional {
//!         input: [1, 8, 8],
//!         conv: Conv2d(1, 4, 3),
//!         ReLU,
//!         _: Flatten,
//!         nn.Linear(4 * 6 * 6, 2),
//!     }
//! }
//!
//! # fn main() -> staticnet::Result<()> {
//! let net = Functional::new(&Cpu, 0)?;
//! let keys: Vec<String> = net.state_dict()?.keys().map(|k| k.to_string()).collect();
//! assert_eq!(keys, ["conv.weight", "conv.bias", "2.weight", "2.bias"]);
//! assert!(!net.to_string().contains("Flatten"));
//! # Ok(())
//! # }
//! ```
//!
//! # Nested listings: `nn.Sequential`
//!
//! `name: [ layers ]` is a nested `nn.Sequential`: its layers are named `name.0`, `name.1`, …
//! (or by their own names), and it prints as `(name): Sequential(`.
//!
//! ```
//! use staticnet::prelude::*;
//!
//! network! {
//!     pub struct NetBn {
//!         input: [1, 28, 28],
//!         features: [
//!             Conv2d(1, 10, 3, padding = 1), MaxPool2d(2, 2), ReLU(inplace = true), BatchNorm2d(10),
//!         ],
//!         Flatten,
//!         fc: Linear(10 * 14 * 14, 10),
//!     }
//! }
//!
//! # fn main() -> staticnet::Result<()> {
//! let net = NetBn::new(&Cpu, 0)?;
//! assert_eq!(net.parameter("features.3.running_var")?.len(), 10);
//! assert_eq!(net.to_string().lines().nth(1), Some("  (features): Sequential("));
//! # Ok(())
//! # }
//! ```
//!
//! # Blocks with parameters
//!
//! `block Name(params) { layers }` defines a reusable listing, used like a layer:
//! `stem: Name(args)`. Its parameters bind as a layer's arguments do (positional, keyword,
//! defaults, which may use the parameters before them), and its layers use them by name. A use
//! is a module of its own: its layers are named under the use's name (`stem.conv.weight`), and it
//! prints as `(stem): Name(`. Blocks are declared in the same `network!` as the networks that use
//! them, before or after.
//!
//! ```
//! use staticnet::prelude::*;
//!
//! network! {
//!     block ConvBn(c_in, c_out, k = 3) {
//!         conv: Conv2d(c_in, c_out, k, padding = k / 2, bias = false),
//!         bn: BatchNorm2d(c_out),
//!         relu: ReLU,
//!     }
//!
//!     pub struct Stem {
//!         input: [3, 32, 32],
//!         stem: ConvBn(3, 16),
//!         wide: ConvBn(16, 32, k = 5),
//!     }
//! }
//!
//! # fn main() -> staticnet::Result<()> {
//! let net = Stem::new(&Cpu, 0)?;
//! assert_eq!(net.parameter("wide.conv.weight")?.shape(), [32, 16, 5, 5]);
//! # Ok(())
//! # }
//! ```
//!
//! # Repetition
//!
//! `name: [item; n]` is a `Sequential` of `n` copies of one item (a layer or a block use), named
//! `name.0` … `name.{n-1}`: torchvision's `layer1` of ResNet-18 is `layer1: [BasicBlock(64, 64);
//! 2]`. The count is an integer expression, or a block's parameter.
//!
//! ```
//! use staticnet::prelude::*;
//!
//! network! {
//!     pub struct Deep {
//!         input: [16],
//!         hidden: [Linear(16, 16); 3],
//!         out: Linear(16, 2),
//!     }
//! }
//!
//! # fn main() -> staticnet::Result<()> {
//! let net = Deep::new(&Cpu, 0)?;
//! assert!(net.parameter("hidden.2.weight").is_ok());
//! # Ok(())
//! # }
//! ```
//!
//! # Values and conditions in a block: `let`, `if`
//!
//! `let name = expression;` computes a value once from the block's parameters (and the `let`s
//! before it), as a line of a PyTorch `__init__` does; it is in scope in the whole block: its
//! layers, its conditions and its shortcut. Integers combine with `+ - * / %` (`/` divides
//! integers as Python's `//` does, for sizes) and parentheses, and with Python's `int`, `round`
//! (half to even), `max` and `min`, so that torchvision's `hidden_dim = int(round(inp *
//! expand_ratio))` is written as it reads; conditions with `== != < <= > >=`, `&&`, `||` and `!`.
//!
//! An item followed by `if condition` is there only for the uses where the condition holds: a
//! layer, a block use, a named listing, or `[ items ]` without a name, a group of items that
//! joins the enclosing listing (Python's `layers.extend([...])`). An absent item takes no index,
//! exactly as a Python list that it was not appended to: the items after it are numbered as
//! PyTorch numbers them. A `let` may also appear in a network or a nested listing, for that
//! listing.
//!
//! ```
//! use staticnet::prelude::*;
//!
//! network! {
//!     block Expand(inp, expand_ratio) {
//!         let hidden = inp * expand_ratio;
//!         [Conv2d(inp, hidden, 1, bias = false), BatchNorm2d(hidden), ReLU] if expand_ratio != 1,
//!         Conv2d(hidden, inp, 3, padding = 1, bias = false),
//!     }
//!
//!     pub struct Widths {
//!         input: [4, 8, 8],
//!         a: Expand(4, 1),
//!         b: Expand(4, 6),
//!     }
//! }
//!
//! # fn main() -> staticnet::Result<()> {
//! let net = Widths::new(&Cpu, 0)?;
//! assert_eq!(net.parameter("a.0.weight")?.shape(), [4, 4, 3, 3], "no expansion: the 3×3 is `0`");
//! assert_eq!(net.parameter("b.0.weight")?.shape(), [24, 4, 1, 1]);
//! assert_eq!(net.parameter("b.3.weight")?.shape(), [4, 24, 3, 3], "after the three spliced layers");
//! # Ok(())
//! # }
//! ```
//!
//! # Residual blocks
//!
//! A block with a `+` line is residual: the output of its layers is added to its shortcut, then
//! passed through its `=>` layer if it has one. The shortcut is `+ identity` (the block's input),
//! or a listing `+ name: [ layers ]` applied to the block's input. Either may be followed by
//! `if condition`:
//!
//! - `+ name: [ layers ] if condition`: the listing where the condition holds, else the identity
//!   (torchvision's BasicBlock: a downsample only where the shape changes);
//! - `+ identity if condition`: the sum itself only where the condition holds; elsewhere the
//!   block's output is its layers' (torchvision's InvertedResidual: `use_res_connect`).
//!
//! `=>` names its layer after its kind in lower case (`=> ReLU` is `relu`, which is torchvision's
//! BasicBlock's `relu`, applied twice); it is applied whether or not the sum is there. The sum
//! needs both sides to have the same shape, checked for every use; a use where they differ is an
//! error naming the block, the layer its main path ends in and both shapes, and the checks go on
//! after it with the main path's shape, so that every such use is reported at once. This is
//! torchvision's BasicBlock:
//!
//! ```
//! use staticnet::prelude::*;
//!
//! network! {
//!     block BasicBlock(inplanes, planes, stride = 1) {
//!         conv1: Conv2d(inplanes, planes, kernel_size = 3, stride = stride, padding = 1, bias = false),
//!         bn1: BatchNorm2d(planes),
//!         relu: ReLU(inplace = true),
//!         conv2: Conv2d(planes, planes, kernel_size = 3, padding = 1, bias = false),
//!         bn2: BatchNorm2d(planes),
//!         + downsample: [
//!             Conv2d(inplanes, planes, kernel_size = 1, stride = stride, bias = false),
//!             BatchNorm2d(planes),
//!         ] if stride != 1 || inplanes != planes,
//!         => ReLU(inplace = true),
//!     }
//!
//!     pub struct Tiny {
//!         input: [8, 16, 16],
//!         layer1: [BasicBlock(8, 8); 2],
//!         layer2: [BasicBlock(8, 16, stride = 2), BasicBlock(16, 16)],
//!         avgpool: AdaptiveAvgPool2d((1, 1)),
//!         Flatten,
//!         fc: Linear(16, 10),
//!     }
//! }
//!
//! # fn main() -> staticnet::Result<()> {
//! let net = Tiny::new(&Cpu, 0)?;
//! assert!(net.parameter("layer2.0.downsample.1.running_mean").is_ok());
//! assert!(net.parameter("layer1.0.downsample.0.weight").is_err(), "the identity when the shape is kept");
//! # Ok(())
//! # }
//! ```
//!
//! And this is torchvision's MobileNetV2 InvertedResidual, with its `Conv2dNormActivation`: a
//! hidden width computed from the parameters, an expansion present only when `expand_ratio != 1`
//! (after which the indices inside `conv` shift: `features.1.conv.1` is the projection where
//! `features.2.conv.2` is), a sum only where the stride is 1 and the widths agree, and no
//! activation after it; the depthwise convolution is `groups = hidden_dim`.
//! examples/mobilenet-v2.rs writes all of `mobilenet_v2()` this way, with
//! `_: AdaptiveAvgPool2d((1, 1))` and `_: Flatten` for what its `forward` calls as functions.
//!
//! ```
//! use staticnet::prelude::*;
//!
//! network! {
//!     /// torchvision's Conv2dNormActivation (a Sequential: its layers are `0`, `1`, `2`).
//!     block Conv2dNormActivation(in_channels, out_channels, kernel_size = 3, stride = 1, groups = 1) {
//!         Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) / 2, groups = groups, bias = false),
//!         BatchNorm2d(out_channels),
//!         ReLU6(inplace = true),
//!     }
//!
//!     /// torchvision's InvertedResidual.
//!     block InvertedResidual(inp, oup, stride, expand_ratio) {
//!         let hidden_dim = int(round(inp * expand_ratio));
//!         conv: [
//!             Conv2dNormActivation(inp, hidden_dim, kernel_size = 1) if expand_ratio != 1,
//!             Conv2dNormActivation(hidden_dim, hidden_dim, stride = stride, groups = hidden_dim),
//!             Conv2d(hidden_dim, oup, 1, 1, 0, bias = false),
//!             BatchNorm2d(oup),
//!         ],
//!         + identity if stride == 1 && inp == oup,
//!     }
//!
//!     pub struct Mobile {
//!         input: [3, 32, 32],
//!         features: [
//!             Conv2dNormActivation(3, 8, stride = 2),
//!             InvertedResidual(8, 8, 1, 1),
//!             InvertedResidual(8, 16, 2, 6),
//!             InvertedResidual(16, 16, 1, 6),
//!         ],
//!         _: AdaptiveAvgPool2d((1, 1)),
//!         _: Flatten,
//!         classifier: [Dropout(0.2), Linear(16, 10)],
//!     }
//! }
//!
//! # fn main() -> staticnet::Result<()> {
//! let net = Mobile::new(&Cpu, 0)?;
//! assert!(net.parameter("features.1.conv.1.weight").is_ok(), "expand_ratio 1: no expansion");
//! assert!(net.parameter("features.2.conv.0.0.weight").is_ok());
//! assert_eq!(net.parameter("features.2.conv.1.0.weight")?.shape(), [48, 1, 3, 3], "depthwise");
//! assert!(net.parameter("features.2.conv.3.running_var").is_ok());
//! assert!(net.parameter("classifier.1.bias").is_ok());
//! // A sum only in features.1 (8 → 8, stride 1) and features.3 (16 → 16, stride 1).
//! let sums: Vec<&str> = Mobile::<Cpu>::SPEC.layers.iter().filter(|l| l.inputs.len() == 2).map(|l| l.name).collect();
//! assert_eq!(sums, ["features.1.add", "features.3.add"]);
//! # Ok(())
//! # }
//! ```
//!
//! # What is generated
//!
//! For each network: the struct, generic over the backend; `new(&device, seed)` (also
//! [`Network::new`](crate::Network::new), for generic code); the constant `PARAMETERS`;
//! [`Network`](crate::Network) with the forward and backward passes generated for the exact
//! shapes; and `Display` / `Debug`, which print the module tree as PyTorch's `print(model)` does.
//! When the listing has errors, the errors come with a stub of the type, so that the code that
//! uses it does not add errors of its own.
