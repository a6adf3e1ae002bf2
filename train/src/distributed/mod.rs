//! Data-parallel training's communication: libtorch's own c10d Gloo process group (the one PyTorch DDP uses
//! on CPU), reached through a small C++ shim compiled against the libtorch `tch` links (`shim.cpp`,
//! `build.rs`), and the launcher's environment it is configured from (torchrun's RANK/WORLD_SIZE/
//! MASTER_ADDR/MASTER_PORT, or a Slurm job step's SLURM_PROCID/SLURM_STEP_NUM_TASKS with the first node as
//! master).

mod data_parallel;

pub use data_parallel::{shard_of, DataParallel};

use std::ffi::{c_char, c_int, CString};
use std::time::Duration;

use tch::Tensor;
use torch_sys::C_tensor;

#[repr(C)]
struct RawGroup {
    _private: [u8; 0],
}

extern "C" {
    fn medico_process_group_new(
        rank: c_int,
        world_size: c_int,
        master_addr: *const c_char,
        master_port: c_int,
        host_store: c_int,
        timeout_ms: c_int,
        error: *mut c_char,
        error_capacity: usize,
    ) -> *mut RawGroup;
    fn medico_process_group_all_reduce_sum(
        group: *mut RawGroup,
        tensors: *const *mut C_tensor,
        count: usize,
        error: *mut c_char,
        error_capacity: usize,
    ) -> c_int;
    fn medico_process_group_free(group: *mut RawGroup);
}

/// Why a process group could not be formed or used.
#[derive(Debug, thiserror::Error)]
pub enum DistributedError {
    /// The launcher's environment is incomplete or malformed.
    #[error("the launcher's environment: {0}")]
    Environment(String),
    /// c10d refused (a rank that never came, a peer that died, a timeout): its message.
    #[error("c10d: {0}")]
    Collective(String),
}

/// Where this process stands among the ranks of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// This process's rank.
    pub rank: usize,
    /// How many ranks.
    pub world_size: usize,
    /// The rank on this node (picks the device).
    pub local_rank: usize,
    /// Rank 0's address.
    pub master_addr: String,
    /// The store's port.
    pub master_port: u16,
    /// Whether the launcher hosts the store (torchrun's agent: `TORCHELASTIC_USE_AGENT_STORE=True`) rather
    /// than rank 0.
    pub launcher_store: bool,
}

impl Launch {
    /// From the environment a launcher sets: torchrun's (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
    /// MASTER_PORT), else those of a Slurm job step, which `srun` starts (SLURM_PROCID, SLURM_STEP_NUM_TASKS,
    /// SLURM_LOCALID, the first host of SLURM_STEP_NODELIST or SLURM_JOB_NODELIST unless MASTER_ADDR is set,
    /// MASTER_PORT or 29500; a batch script itself, with no SLURM_STEP_ID, is one process). `None`
    /// when no launcher started this process (a one-process run).
    pub fn from_env() -> Result<Option<Self>, DistributedError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] over any variable source.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, DistributedError> {
        let number = |name: &str| -> Result<Option<usize>, DistributedError> {
            var(name)
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .map_err(|_| DistributedError::Environment(format!("{name}={v} is not a number")))
                })
                .transpose()
        };
        let (rank, world_size, local_rank, slurm) = match (number("RANK")?, number("WORLD_SIZE")?) {
            (Some(rank), Some(world)) => (rank, world, number("LOCAL_RANK")?.unwrap_or(0), false),
            _ if var("SLURM_STEP_ID").is_none() => return Ok(None),
            _ => match (number("SLURM_PROCID")?, number("SLURM_STEP_NUM_TASKS")?) {
                (Some(rank), Some(world)) => (rank, world, number("SLURM_LOCALID")?.unwrap_or(0), true),
                _ => return Ok(None),
            },
        };
        if world_size == 0 || rank >= world_size {
            return Err(DistributedError::Environment(format!("rank {rank} of {world_size}")));
        }
        let master_addr = match var("MASTER_ADDR") {
            Some(addr) => addr,
            None if slurm => var("SLURM_STEP_NODELIST")
                .or_else(|| var("SLURM_JOB_NODELIST"))
                .map(|list| first_host(&list))
                .ok_or_else(|| DistributedError::Environment("no MASTER_ADDR and no Slurm node list".into()))?,
            None => {
                return Err(DistributedError::Environment(
                    "RANK is set but MASTER_ADDR is not".into(),
                ))
            }
        };
        let master_port = match var("MASTER_PORT") {
            Some(port) => port
                .trim()
                .parse::<u16>()
                .map_err(|_| DistributedError::Environment(format!("MASTER_PORT={port} is not a port")))?,
            None if slurm => 29500,
            None => {
                return Err(DistributedError::Environment(
                    "RANK is set but MASTER_PORT is not".into(),
                ))
            }
        };
        Ok(Some(Self {
            rank,
            world_size,
            local_rank,
            master_addr,
            master_port,
            launcher_store: var("TORCHELASTIC_USE_AGENT_STORE").as_deref() == Some("True"),
        }))
    }
}

/// The first host of a Slurm node list (`node[01-04,07],gpu2` → `node01`).
fn first_host(list: &str) -> String {
    let first = list.split(',').next().unwrap_or_default();
    match first.split_once('[') {
        Some((prefix, range)) => {
            let start = range.split(['-', ',', ']']).next().unwrap_or_default();
            format!("{prefix}{start}")
        }
        None => first.to_string(),
    }
}

/// The largest all-reduce bucket (DDP's default `bucket_cap_mb`).
pub const BUCKET_BYTES: usize = 25 << 20;

/// Consecutive runs of tensors of one kind, each at most [`BUCKET_BYTES`] unless one tensor alone is larger.
fn buckets(tensors: &[Tensor]) -> Vec<std::ops::Range<usize>> {
    let mut buckets = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, tensor) in tensors.iter().enumerate() {
        let size = tensor.numel() * tensor.kind().elt_size_in_bytes();
        let same_kind = i == start || tensors[start].kind() == tensor.kind();
        if i > start && (!same_kind || bytes + size > BUCKET_BYTES) {
            buckets.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < tensors.len() {
        buckets.push(start..tensors.len());
    }
    buckets
}

/// A Gloo process group of every rank of a run.
pub struct ProcessGroup {
    raw: *mut RawGroup,
    rank: usize,
    world_size: usize,
}

// The process group is used from one thread at a time (the trainer's).
unsafe impl Send for ProcessGroup {}

const ERROR_CAPACITY: usize = 1024;

/// c10d's message without the C++ backtrace it appends.
fn error_text(buffer: &[u8]) -> String {
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    let text = String::from_utf8_lossy(&buffer[..end]);
    text.split("\nException raised from")
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

impl ProcessGroup {
    /// Joins the run `launch` describes; rank 0 hosts the store unless the launcher does. Fails when the other ranks do not come
    /// within `timeout` (which also bounds every later collective: a rank that dies makes the others fail
    /// instead of hanging).
    pub fn join(launch: &Launch, timeout: Duration) -> Result<Self, DistributedError> {
        let addr = CString::new(launch.master_addr.clone())
            .map_err(|_| DistributedError::Environment("MASTER_ADDR holds a NUL byte".into()))?;
        let mut error = vec![0u8; ERROR_CAPACITY];
        let timeout_ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
        // SAFETY: the strings and buffer outlive the call; the shim copies what it keeps.
        let raw = unsafe {
            medico_process_group_new(
                launch.rank as c_int,
                launch.world_size as c_int,
                addr.as_ptr(),
                c_int::from(launch.master_port),
                c_int::from(!launch.launcher_store),
                timeout_ms,
                error.as_mut_ptr().cast(),
                error.len(),
            )
        };
        if raw.is_null() {
            return Err(DistributedError::Collective(error_text(&error)));
        }
        Ok(Self {
            raw,
            rank: launch.rank,
            world_size: launch.world_size,
        })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// How many ranks.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// Sums `tensors` over every rank, in place (each rank passes tensors of the same shapes and kinds in the
    /// same order). They travel in buckets, as DDP's: consecutive tensors of one kind flattened into one
    /// buffer of at most [`BUCKET_BYTES`] (a larger tensor alone), one collective each, copied back.
    pub fn all_reduce_sum(&self, tensors: &mut [Tensor]) -> Result<(), DistributedError> {
        for bucket in buckets(tensors) {
            let flat: Vec<Tensor> = bucket.clone().map(|i| tensors[i].detach().flatten(0, -1)).collect();
            let mut buffer = Tensor::cat(&flat, 0);
            self.all_reduce_raw(&mut buffer)?;
            let mut offset = 0;
            tch::no_grad(|| {
                for i in bucket {
                    let numel = tensors[i].numel() as i64;
                    let part = buffer.narrow(0, offset, numel).view_as(&tensors[i]);
                    tensors[i].copy_(&part);
                    offset += numel;
                }
            });
        }
        Ok(())
    }

    /// One all-reduce (sum) of one tensor through the shim.
    fn all_reduce_raw(&self, tensor: &mut Tensor) -> Result<(), DistributedError> {
        let pointers = [tensor.as_mut_ptr()];
        let mut error = vec![0u8; ERROR_CAPACITY];
        // SAFETY: the pointer is a live tensor borrowed mutably for the call.
        let status = unsafe {
            medico_process_group_all_reduce_sum(
                self.raw,
                pointers.as_ptr(),
                pointers.len(),
                error.as_mut_ptr().cast(),
                error.len(),
            )
        };
        match status {
            0 => Ok(()),
            _ => Err(DistributedError::Collective(error_text(&error))),
        }
    }

    /// Averages `tensors` over every rank, in place (the gradients of a data-parallel step).
    pub fn all_reduce_mean(&self, tensors: &mut [Tensor]) -> Result<(), DistributedError> {
        self.all_reduce_sum(tensors)?;
        let scale = 1.0 / self.world_size as f64;
        tch::no_grad(|| {
            for tensor in tensors.iter_mut() {
                let _ = tensor.g_mul_scalar_(scale);
            }
        });
        Ok(())
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `medico_process_group_new` and is freed once.
        unsafe { medico_process_group_free(self.raw) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn buckets_hold_one_kind_and_at_most_the_cap() {
        let big = (BUCKET_BYTES / 4) as i64;
        let tensors = [
            Tensor::zeros([big / 2], (tch::Kind::Float, tch::Device::Cpu)),
            Tensor::zeros([big / 2], (tch::Kind::Float, tch::Device::Cpu)),
            Tensor::zeros([1], (tch::Kind::Float, tch::Device::Cpu)),
            Tensor::zeros([1], (tch::Kind::Double, tch::Device::Cpu)),
            Tensor::zeros([2 * big], (tch::Kind::Double, tch::Device::Cpu)),
            Tensor::zeros([3], (tch::Kind::Double, tch::Device::Cpu)),
        ];
        assert_eq!(buckets(&tensors), vec![0..2, 2..3, 3..4, 4..5, 5..6]);
        assert_eq!(buckets(&[]), Vec::<std::ops::Range<usize>>::new());
    }

    #[test]
    fn the_launch_comes_from_torchrun_or_slurm() {
        assert_eq!(Launch::from_vars(vars(&[])).unwrap(), None);
        let torchrun = [
            ("RANK", "1"),
            ("WORLD_SIZE", "2"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "10.0.0.1"),
            ("MASTER_PORT", "29400"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
        ];
        let launch = Launch::from_vars(vars(&torchrun)).unwrap().unwrap();
        assert_eq!(
            (launch.rank, launch.world_size, launch.local_rank, launch.master_port),
            (1, 2, 1, 29400)
        );
        assert!(launch.launcher_store);
        let slurm = [
            ("SLURM_PROCID", "3"),
            ("SLURM_NTASKS", "16"),
            ("SLURM_STEP_ID", "0"),
            ("SLURM_STEP_NUM_TASKS", "8"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_JOB_NODELIST", "gpu[07-08],cpu1"),
        ];
        let launch = Launch::from_vars(vars(&slurm)).unwrap().unwrap();
        assert_eq!(
            (launch.rank, launch.master_addr.as_str(), launch.master_port),
            (3, "gpu07", 29500)
        );
        assert!(!launch.launcher_store, "srun: rank 0 hosts the store");
        assert_eq!(launch.world_size, 8, "the step's tasks, not the job's");
        // A batch script itself (no job step) is one process, whatever the allocation's task count.
        let batch_script = [
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_JOB_NODELIST", "cpu1"),
        ];
        assert_eq!(Launch::from_vars(vars(&batch_script)).unwrap(), None);
        assert!(Launch::from_vars(vars(&[("RANK", "2"), ("WORLD_SIZE", "2")])).is_err());
        assert!(
            Launch::from_vars(vars(&[("RANK", "0"), ("WORLD_SIZE", "2")])).is_err(),
            "no master"
        );
    }
}
