// Three mistakes in one network are reported together, and the code that uses the network
// compiles as if it were right (no follow-on errors).
use staticnet::prelude::*;

network! {
    pub struct Net {
        input: [1, 28, 28],
        cnn1: Conv2d(1, 16, 5, padding = 2),
        relu1: Relu,
        cnn2: Conv2d(8, 32, 5, padding = 2),
        pool: MaxPool2d(2),
        Flatten,
        fc: Linear(32 * 7 * 7, 10),
    }
}

fn main() -> staticnet::Result<()> {
    let mut model = Net::new(&Cpu, 0)?;
    let mut sgd = Sgd::new(0.1).momentum(0.9);
    let x = Images::<1, 28, 28>::zeros(2);
    let step = model.train_step(&x, &[0, 1], &mut sgd)?;
    let logits: Vectors<10> = model.forward(&x)?;
    println!("{} {:?}", step.loss, logits);
    Ok(())
}
