// Softmax as the last layer of a network trained with cross-entropy (a warning, denied here).
#![deny(deprecated)]
use staticnet::prelude::*;

network! {
    pub struct Net {
        input: [784],
        fc: Linear(784, 10),
        out: Softmax(dim = 1),
    }
}

fn main() -> staticnet::Result<()> {
    let mut model = Net::new(&Cpu, 0)?;
    let mut sgd = Sgd::new(0.1);
    model.train_step(&Vectors::<784>::zeros(2), &[0, 1], &mut sgd)?;
    Ok(())
}
