// CIFAR-10 images handed to an MNIST network: a type error, not a run-time panic.
use staticnet::prelude::*;

network! {
    pub struct MnistNet {
        input: [1, 28, 28],
        Flatten,
        fc: Linear(28 * 28, 10),
    }
}

fn main() -> staticnet::Result<()> {
    let mut model = MnistNet::new(&Cpu, 0)?;
    let cifar_batch = Images::<3, 32, 32>::zeros(8);
    model.forward(&cifar_batch)?;
    Ok(())
}
