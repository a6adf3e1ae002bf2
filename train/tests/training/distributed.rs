//! libtorch's c10d Gloo process group through medico's shim: two ranks on loopback average their tensors as
//! DDP averages gradients, and a rank that never comes makes the other fail within the timeout with c10d's
//! error instead of hanging.

use std::time::{Duration, Instant};

use medico_train::distributed::{Launch, ProcessGroup};
use tch::Tensor;

fn launch(rank: usize, world_size: usize, port: u16) -> Launch {
    Launch {
        rank,
        world_size,
        local_rank: rank,
        master_addr: "127.0.0.1".into(),
        master_port: port,
    }
}

#[test]
fn two_ranks_average_their_tensors() {
    let ranks: Vec<_> = (0..2)
        .map(|rank| {
            std::thread::spawn(move || {
                let group = ProcessGroup::join(&launch(rank, 2, 29611), Duration::from_secs(30)).unwrap();
                assert_eq!((group.rank(), group.world_size()), (rank, 2));
                let mut tensors = vec![
                    Tensor::from_slice(&[1.0f32, 2.0, 3.0]) * (rank as f64 + 1.0),
                    Tensor::from_slice(&[10.0f32]) * rank as f64,
                ];
                group.all_reduce_mean(&mut tensors).unwrap();
                (
                    Vec::<f32>::try_from(&tensors[0]).unwrap(),
                    Vec::<f32>::try_from(&tensors[1]).unwrap(),
                )
            })
        })
        .collect();
    for rank in ranks {
        let (first, second) = rank.join().unwrap();
        assert_eq!(first, [1.5, 3.0, 4.5]);
        assert_eq!(second, [5.0]);
    }
}

#[test]
fn a_rank_that_never_comes_is_an_error_within_the_timeout() {
    let started = Instant::now();
    let error = ProcessGroup::join(&launch(0, 2, 29612), Duration::from_secs(3))
        .err()
        .expect("no second rank");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(30), "waited {elapsed:?}");
    assert!(error.to_string().starts_with("c10d:"), "{error}");
}
