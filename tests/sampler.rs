//! The data-parallel sampler and the distributed training path, without MPI: `DataLoader::shard`
//! against one process's batches, and `Trainer::distributed` with one process.

use std::collections::BTreeSet;
use std::sync::Arc;

use staticnet::distributed::{Collective, SingleProcess, fingerprint};
use staticnet::prelude::*;
use staticnet::{DataLoader, Dataset, Trainer};

network! {
    /// A linear classifier of 3 features.
    pub struct Tiny {
        input: [3],
        fc: Linear(3, 2),
    }
}

/// Samples whose first feature is their index, so that a batch says which samples it holds.
fn indexed(n: usize) -> Dataset<Vectors<3>> {
    let values = (0..n).flat_map(|i| [i as f32, 1.0, -1.0]).collect();
    Dataset::new("indexed", values, (0..n).map(|i| i % 2).collect(), 2).unwrap()
}

fn batches(loader: &mut DataLoader<Vectors<3>>, epoch: u64) -> Vec<Vec<usize>> {
    loader.start_epoch(epoch);
    let mut out = Vec::new();
    while let Some((x, _)) = loader.next().unwrap() {
        out.push(x.as_slice().chunks(3).map(|s| s[0] as usize).collect());
    }
    out
}

#[test]
fn the_ranks_batches_together_are_one_process_batches_of_w_times_the_size() {
    for (n, world, batch) in [(250, 2, 20), (100, 4, 5), (7, 7, 1), (64, 2, 64)] {
        let data = indexed(n);
        let single = batches(&mut DataLoader::new(&data, world * batch).unwrap().shuffle(9), 3);
        let ranks: Vec<Vec<Vec<usize>>> = (0..world).map(|r| batches(&mut DataLoader::new(&data, batch).unwrap().shuffle(9).shard(r, world).unwrap(), 3)).collect();
        for (k, global) in single.iter().enumerate() {
            // Rank r holds positions r, r + W, … of the global batch, in that order.
            for (r, rank) in ranks.iter().enumerate() {
                let expected: Vec<usize> = global.iter().skip(r).step_by(world).copied().collect();
                assert_eq!(rank[k], expected, "n {n}, world {world}, batch {k}, rank {r}");
            }
        }
        assert!(ranks.iter().all(|r| r.len() == single.len()), "n {n}, world {world}");
    }
}

#[test]
fn padding_repeats_the_first_samples_of_the_epoch_as_distributed_sampler_does() {
    // 10 samples on 4 ranks: 12 positions, the last two the epoch's first two samples.
    let data = indexed(10);
    let order: Vec<usize> = batches(&mut DataLoader::new(&data, 100).unwrap().shuffle(4), 1).concat();
    let padded: Vec<usize> = order.iter().chain(&order[..2]).copied().collect();
    for r in 0..4 {
        let got = batches(&mut DataLoader::new(&data, 100).unwrap().shuffle(4).shard(r, 4).unwrap(), 1).concat();
        assert_eq!(got, padded.iter().skip(r).step_by(4).copied().collect::<Vec<_>>(), "rank {r}");
    }
    // Unpadded (evaluation): every sample once, shares differing by one at most.
    let mut seen = Vec::new();
    for r in 0..4 {
        let share = batches(&mut DataLoader::new(&data, 3).unwrap().shard_unpadded(r, 4).unwrap(), 0).concat();
        assert_eq!(share.len(), if r < 2 { 3 } else { 2 });
        seen.extend(share);
    }
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), (0..10).collect());
}

#[test]
fn a_rank_outside_the_world_is_an_error() {
    let data = indexed(4);
    let err = DataLoader::new(&data, 2).unwrap().shard(2, 2).err().unwrap().to_string();
    assert!(err.contains("rank 2 of a world of 2"), "{err}");
    assert!(DataLoader::new(&data, 2).unwrap().shard_unpadded(0, 0).is_err());
}

#[test]
fn distributed_training_in_one_process_is_plain_training() {
    let data = indexed(50);
    let run = |distributed: bool| {
        let mut model = Tiny::new(&Cpu, 1).unwrap();
        let mut trainer = Trainer::new(2).batch_size(8).progress(false).verbose(false);
        if distributed {
            trainer = trainer.distributed(Arc::new(SingleProcess) as Arc<dyn Collective<Cpu>>);
        }
        let history = trainer.fit(&mut model, &mut Sgd::new(0.01), &data, Some(&data)).unwrap();
        (history.epochs.iter().map(|e| (e.train_loss, e.val_loss)).collect::<Vec<_>>(), fingerprint(&model).unwrap())
    };
    assert_eq!(run(true), run(false));
}
