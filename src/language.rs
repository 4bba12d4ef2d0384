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
//! | `MaxPool2d` | `kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False` | an image input; the window fits; `padding` at most half the (dilated) kernel, as PyTorch requires; `stride` None means the kernel size; `return_indices` False |
//! | `AvgPool2d` | `kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None` | as `MaxPool2d`; `divisor_override` None or at least 1 |
//! | `AdaptiveAvgPool2d` | `output_size` | an image input; an integer or a pair, where None keeps that side |
//! | `Flatten` | `start_dim=1, end_dim=-1` | only those: everything but the batch dimension into one |
//! | `Dropout` | `p=0.5, inplace=False` | `p` between 0 and 1 (1 zeroes everything) |
//! | `BatchNorm2d` | `num_features, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True` | an image input; `num_features` equals the channels arriving; `eps` > 0; `momentum` in [0, 1] or None (a cumulative average); `bias` True only, for now |
//! | `BatchNorm1d` | `num_features, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True` | as `BatchNorm2d`, on a vector input |
//! | `Softmax` | `dim=None` | over the features or channels: `dim` None, 1, or -1 on vectors; a network ending in `Softmax` warns where it is trained with cross-entropy |
//! | `LogSoftmax` | `dim=None` | as `Softmax` |
//!
//! A misspelt layer gets a "did you mean" (`Relu` → `ReLU`), and a PyTorch layer staticnet does
//! not have yet (`GELU`, `Conv1d`, …) says so.
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
//! # Residual blocks
//!
//! A block with a `+` line is residual: the output of its layers is added to its shortcut, then
//! passed through its `=>` layer. The shortcut is `+ identity` (the block's input), or a listing
//! `+ name: [ layers ]` applied to the block's input, optionally only `if` a condition on the
//! block's parameters holds (else the identity); `=>` names its layer after its kind in lower
//! case (`=> ReLU` is `relu`, which is torchvision's BasicBlock's `relu`, applied twice). The
//! sum needs both sides to have the same shape, checked for every use. This is torchvision's
//! BasicBlock:
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
//! # What is generated
//!
//! For each network: the struct, generic over the backend; `new(&device, seed)` (also
//! [`Network::new`](crate::Network::new), for generic code); the constant `PARAMETERS`;
//! [`Network`](crate::Network) with the forward and backward passes generated for the exact
//! shapes; and `Display` / `Debug`, which print the module tree as PyTorch's `print(model)` does.
//! When the listing has errors, the errors come with a stub of the type, so that the code that
//! uses it does not add errors of its own.
