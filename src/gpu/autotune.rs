//! Kernel autotuning per adapter. The hot ops (the conv2d and dense passes) come in several
//! variants; which is fastest depends on the adapter (shared-memory tiles win on real GPUs and
//! lose badly on CPU adapters) and on the shape. The first time an (adapter, driver, kernels,
//! op, shape) is seen, each variant is timed on the real buffers and the fastest kept, in a JSON
//! cache in the user's cache directory that later runs reuse without timing.
//!
//! Every choice is reported as a [`KernelChoice`] (for `info --kernels` and the metrics JSON),
//! and a run's choices can be pinned again ([`Autotuner::pin`]) to reproduce it exactly: the
//! variants of an op may sum in different orders, so they agree only within tolerance.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};

use super::context::GpuContext;
use super::kernel::{compile_pipelines, record_passes, Dispatch};
use super::variant::{Offer, Variant};
use crate::backend::KernelChoice;
use crate::config::AutotuneMode;
use crate::fsutil::write_atomic;

/// Where the cache lives: `$MNIST_WGPU_CACHE_DIR/autotune.json`, else
/// `<user cache dir>/mnist-wgpu/autotune.json`; `None` when the platform has no cache dir.
pub fn default_cache_path() -> Option<PathBuf> {
    let dir = match std::env::var_os("MNIST_WGPU_CACHE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => dirs::cache_dir()?.join("mnist-wgpu"),
    };
    Some(dir.join("autotune.json"))
}

/// The cache file: device key -> (op and shape -> entry).
#[derive(Default, Serialize, Deserialize)]
struct CacheFile {
    devices: BTreeMap<String, BTreeMap<String, CacheEntry>>,
}

#[derive(Clone, Serialize, Deserialize)]
struct CacheEntry {
    variant: String,
    timings_us: BTreeMap<String, f64>,
}

/// How long and how often the autotuner times a variant: each sample long enough to swamp the
/// submit overhead, the fastest of a few kept.
pub const TUNING: Sampling = Sampling {
    samples: 3,
    sample_seconds: 0.02,
};

/// How a run of dispatches is timed: the fastest of `samples` samples, each repeating the run
/// for about `sample_seconds`.
#[derive(Clone, Copy)]
pub struct Sampling {
    pub samples: usize,
    pub sample_seconds: f64,
}
/// A variant whose first run is this many times slower than the best so far is not sampled
/// further: it cannot win, and on a CPU adapter a slow variant can take seconds a run.
const HOPELESS: f64 = 3.0;
/// Where a variant may be hopeless, it first runs this fraction (1 / JUDGE_PARTS) of its
/// workgroups: when that part alone is too slow, so is the whole, which never runs.
const JUDGE_PARTS: u32 = 8;

/// The tuning procedure's version, part of every cache key: choices made by an older procedure
/// are timed again. 2: compile runs before timing (version 1 could time a recompile and keep
/// the wrong variant).
const PROCEDURE: u32 = 2;

/// The (op, shape, variant) that one of several autotuners compiling side by side has taken
/// (see [`Autotuner::set_compile_only`]), with the seconds its compilation took.
pub type Claims = Arc<Mutex<BTreeMap<String, f64>>>;

/// Chooses a variant for each (op, shape) and remembers what it chose.
pub struct Autotuner {
    mode: AutotuneMode,
    cache_path: Option<PathBuf>,
    /// Adapter, driver, API, a hash of the kernels' source and the tuning procedure: a cached
    /// choice is reused only for exactly this combination.
    device: String,
    cache: Option<CacheFile>,
    pinned: BTreeMap<String, String>,
    choices: Vec<KernelChoice>,
    /// Compile-only mode, shared with the other autotuners compiling beside this one.
    claims: Option<Claims>,
    /// The seconds each (op, shape, variant) took to compile in an earlier compile-only pass,
    /// added to its compile seconds (the later compilation only reads the driver's cache).
    compiled_before: BTreeMap<String, f64>,
}

impl Autotuner {
    pub fn new(ctx: &GpuContext, mode: AutotuneMode, cache_path: Option<PathBuf>) -> Autotuner {
        let info = &ctx.info;
        Autotuner {
            mode,
            cache_path,
            device: format!(
                "{} | {} {} | {} | kernels {} | tuning {PROCEDURE}",
                info.name,
                info.driver,
                info.driver_info,
                ctx.backend_name(),
                env!("MNIST_WGPU_SHADERS_HASH")
            ),
            cache: None,
            pinned: BTreeMap::new(),
            choices: Vec::new(),
            claims: None,
            compiled_before: BTreeMap::new(),
        }
    }

    /// With `Some`, `choose` only compiles (a single-workgroup run) every variant that no
    /// holder of the same claims has taken yet, and returns the rule's dispatches, neither
    /// timed nor recorded; `None` ends that, keeping the claims' compile seconds (call it once
    /// every holder is done).
    pub fn set_compile_only(&mut self, claims: Option<Claims>) {
        if let Some(done) = std::mem::replace(&mut self.claims, claims) {
            self.compiled_before = done.lock().expect("claims").clone();
        }
    }

    /// Whether building networks would time variants with nothing cached for this adapter:
    /// refreshing, or tuning on an adapter (driver, kernels) never tuned before.
    pub fn tunes_afresh(&mut self) -> bool {
        match self.mode {
            AutotuneMode::Off => false,
            AutotuneMode::Refresh => true,
            AutotuneMode::On => {
                let device = self.device.clone();
                !self.cache_file().devices.contains_key(&device)
            }
        }
    }

    /// Use exactly these choices where their op and shape come up (ahead of cache and rule).
    pub fn pin(&mut self, choices: &[KernelChoice]) {
        for c in choices {
            self.pinned.insert(key(&c.op, &c.shape), c.variant.clone());
        }
    }

    pub fn mode(&self) -> AutotuneMode {
        self.mode
    }

    /// Every choice made so far, in the order the ops were first built.
    pub fn choices(&self) -> &[KernelChoice] {
        &self.choices
    }

    /// The dispatches of `op` at `shape`, built by `build` with the chosen variant of `offer`:
    /// a pinned choice (any offered variant), else the offer's rule when tuning is off or there
    /// is nothing to choose, else the cached choice (unless refreshing), else the fastest of the
    /// offer's timed variants when timed on `ctx`. Their pipelines are compiled before they are
    /// returned (see [`compile_pipelines`]), so that a network is ready to run once built.
    pub fn choose(
        &mut self,
        ctx: &GpuContext,
        (op, shape): (&str, &str),
        offer: &Offer,
        build: impl Fn(Variant) -> Vec<Dispatch>,
    ) -> Result<Vec<Dispatch>> {
        let (variants, rule) = (&offer.timed[..], offer.rule);
        let key = key(op, shape);
        let claim = |v: Variant| format!("{key} | {}", v.name());
        if let Some(claims) = &self.claims {
            for &v in variants {
                let mine = match claims.lock().expect("claims").entry(claim(v)) {
                    Entry::Vacant(slot) => {
                        slot.insert(0.0);
                        true
                    }
                    Entry::Occupied(_) => false,
                };
                if mine {
                    let seconds = compile_pipelines(ctx, &build(v))?;
                    claims.lock().expect("claims").insert(claim(v), seconds);
                }
            }
            return Ok(build(rule));
        }
        let timed = |name: &str| variants.iter().copied().find(|v| v.name() == name);
        let mut timings = BTreeMap::new();
        let mut compile_seconds = BTreeMap::new();
        let mut compiled = |v: Variant| -> Result<Vec<Dispatch>> {
            let dispatches = build(v);
            compile_seconds.insert(v.name().to_string(), compile_pipelines(ctx, &dispatches)?);
            Ok(dispatches)
        };
        let (variant, source, dispatches) = if let Some(name) = self.pinned.get(&key) {
            let v = offer.named(name).ok_or_else(|| {
                let offered: Vec<&str> = offer.variants.iter().map(|v| v.name()).collect();
                anyhow!(
                    "pinned kernel variant '{name}' does not exist for {op} ({shape}) on this \
                     adapter; it offers {}",
                    offered.join(", ")
                )
            })?;
            (v, "pinned", compiled(v)?)
        } else if self.mode == AutotuneMode::Off || variants.len() < 2 {
            (rule, "rule", compiled(rule)?)
        } else if let Some((v, entry)) = self
            .cached(&key)
            .filter(|_| self.mode == AutotuneMode::On)
            // A variant added since the entry was written (it has no timing there) reopens
            // the choice.
            .filter(|e| variants.iter().all(|v| e.timings_us.contains_key(v.name())))
            .and_then(|e| Some((timed(&e.variant)?, e)))
        {
            timings = entry.timings_us;
            (v, "cache", compiled(v)?)
        } else {
            let tuned = tune(ctx, variants, build)?;
            let (v, dispatches) = (tuned.variant, tuned.dispatches);
            (timings, compile_seconds) = (tuned.timings_us, tuned.compile_seconds);
            self.store(
                key.clone(),
                CacheEntry {
                    variant: v.name().to_string(),
                    timings_us: timings.clone(),
                },
            );
            log::info!("autotuned {op} ({shape}): {}", v.name());
            (v, "tuned", dispatches)
        };
        if !self
            .choices
            .iter()
            .any(|c| key == self::key(&c.op, &c.shape))
        {
            self.choices.push(KernelChoice {
                op: op.to_string(),
                shape: shape.to_string(),
                variant: variant.name().to_string(),
                source: source.to_string(),
                timings_us: timings,
                compile_seconds: compile_seconds
                    .into_iter()
                    .map(|(v, s)| {
                        let before = self.compiled_before.get(&format!("{key} | {v}"));
                        (v, s + before.unwrap_or(&0.0))
                    })
                    .collect(),
            });
        }
        Ok(dispatches
            .into_iter()
            .map(|d| d.with_variant(variant.name()))
            .collect())
    }

    fn cached(&mut self, key: &str) -> Option<CacheEntry> {
        let device = self.device.clone();
        self.cache_file().devices.get(&device)?.get(key).cloned()
    }

    /// The cache, read on first use. A missing file is an empty cache; an unreadable one is
    /// reported and replaced at the next write.
    fn cache_file(&mut self) -> &mut CacheFile {
        let path = self.cache_path.clone();
        self.cache.get_or_insert_with(|| {
            let Some(path) = path else {
                return CacheFile::default();
            };
            match read_cache(&path) {
                Ok(cache) => cache,
                Err(e) => {
                    log::warn!("ignoring the autotune cache {}: {e:#}", path.display());
                    CacheFile::default()
                }
            }
        })
    }

    /// Adds an entry to the cache and writes it. Other processes may tune on the same machine
    /// at the same time: under a lock file beside the cache, the entry is merged into the file
    /// as it is on disk now (not the copy read at start-up, which would drop what they added),
    /// and the file is replaced atomically.
    fn store(&mut self, key: String, entry: CacheEntry) {
        let device = self.device.clone();
        let add = |cache: &mut CacheFile| {
            let entries = cache.devices.entry(device.clone()).or_default();
            entries.insert(key.clone(), entry.clone());
        };
        add(self.cache_file());
        let Some(path) = self.cache_path.clone() else {
            return;
        };
        let merged = (|| -> Result<CacheFile> {
            let _lock = lock_beside(&path)?;
            // A corrupt file is replaced (reported when first read).
            let mut on_disk = read_cache(&path).unwrap_or_default();
            add(&mut on_disk);
            write_atomic(&path, &serde_json::to_vec_pretty(&on_disk)?)?;
            Ok(on_disk)
        })();
        match merged {
            Ok(on_disk) => {
                // What the others tuned meanwhile serves this run too.
                for (device, entries) in on_disk.devices {
                    let mine = self.cache_file().devices.entry(device).or_default();
                    for (key, entry) in entries {
                        mine.entry(key).or_insert(entry);
                    }
                }
            }
            Err(e) => log::warn!(
                "could not write the autotune cache {}: {e:#}",
                path.display()
            ),
        }
    }
}

/// An exclusive lock on `<path>.lock`, held until the file is dropped.
fn lock_beside(path: &Path) -> Result<std::fs::File> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| anyhow!("{}: {e}", lock_path.display()))?;
    file.lock()
        .map_err(|e| anyhow!("{}: cannot lock: {e}", lock_path.display()))?;
    Ok(file)
}

fn key(op: &str, shape: &str) -> String {
    format!("{op} | {shape}")
}

/// The entries of an autotune cache file's bytes, as a run reads them (for the fuzzer).
pub fn parse_cache(bytes: &[u8]) -> Result<usize> {
    let cache = cache_from_bytes(bytes)?;
    Ok(cache.devices.values().map(BTreeMap::len).sum())
}

fn cache_from_bytes(bytes: &[u8]) -> Result<CacheFile> {
    Ok(serde_json::from_slice(bytes)?)
}

fn read_cache(path: &Path) -> Result<CacheFile> {
    match std::fs::read(path) {
        Ok(bytes) => cache_from_bytes(&bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CacheFile::default()),
        Err(e) => Err(e.into()),
    }
}

/// Times every variant and returns the fastest, the microseconds of each (its fastest
/// sample), and the winner's dispatches. The samples of the variants are taken in turns, so
/// that a slow spell of the machine (a CPU adapter shares it with everything else) falls on
/// all of them rather than on the one being timed.
fn tune(
    ctx: &GpuContext,
    variants: &[Variant],
    build: impl Fn(Variant) -> Vec<Dispatch>,
) -> Result<Tuned> {
    let mut timings = BTreeMap::new();
    let mut compile_seconds = BTreeMap::new();
    let mut contenders: Vec<(Variant, Vec<Dispatch>, Timing)> = Vec::new();
    for &v in variants {
        let dispatches = build(v);
        let best = contenders.iter().map(|(.., t)| t.fastest).reduce(f64::min);
        let limit = best.map(|best| HOPELESS * best);
        let timing = Timing::new(ctx, &dispatches, TUNING, limit)?;
        compile_seconds.insert(v.name().to_string(), timing.compile_seconds);
        if limit.is_some_and(|limit| timing.fastest > limit) {
            timings.insert(v.name().to_string(), timing.fastest * 1e6);
        } else {
            contenders.push((v, dispatches, timing));
        }
    }
    for _ in 0..TUNING.samples {
        for (_, dispatches, timing) in &mut contenders {
            timing.sample(ctx, dispatches)?;
        }
    }
    let mut best: Option<(Variant, Vec<Dispatch>, Timing)> = None;
    for (v, dispatches, timing) in contenders {
        timings.insert(v.name().to_string(), timing.fastest * 1e6);
        if best
            .as_ref()
            .is_none_or(|(.., b)| timing.fastest < b.fastest)
        {
            best = Some((v, dispatches, timing));
        }
    }
    let (variant, dispatches, _) = best.ok_or_else(|| anyhow!("autotune: no variant to time"))?;
    Ok(Tuned {
        variant,
        dispatches,
        timings_us: timings,
        compile_seconds,
    })
}

/// What `tune` found: the fastest variant and its dispatches, and for every variant its
/// microseconds per run and the seconds it took to compile.
struct Tuned {
    variant: Variant,
    dispatches: Vec<Dispatch>,
    timings_us: BTreeMap<String, f64>,
    compile_seconds: BTreeMap<String, f64>,
}

/// Seconds per run of `dispatches` (recorded back to back in one pass): the fastest of the
/// samples `sampling` asks for. Stops after the first run when it is slower than
/// `give_up_after`.
pub fn time_dispatches(
    ctx: &GpuContext,
    dispatches: &[Dispatch],
    give_up_after: Option<f64>,
    sampling: Sampling,
) -> Result<f64> {
    let mut timing = Timing::new(ctx, dispatches, sampling, give_up_after)?;
    if give_up_after.is_some_and(|limit| timing.fastest > limit) {
        return Ok(timing.fastest);
    }
    for _ in 0..sampling.samples {
        timing.sample(ctx, dispatches)?;
    }
    Ok(timing.fastest)
}

/// A run of dispatches being timed: how many times a sample repeats it, and the fastest
/// seconds per run seen so far.
struct Timing {
    reps: usize,
    fastest: f64,
    compile_seconds: f64,
}

impl Timing {
    /// Compiles `dispatches` (see [`compile_pipelines`]), then runs them once, which sizes the
    /// samples and tells a hopeless variant (slower than `limit`, the caller's test) without
    /// more runs. A first run that compiled would time the compiler: on a fresh lavapipe
    /// machine a tuning once kept dense variants 8x slower than the best, and a rule that took
    /// a variant run at another batch size as compiled judged a texture variant by its
    /// recompile (lavapipe's key includes texture sizes). With a `limit`, a part of the
    /// workgroups runs first; when the part alone is slower, the whole run is skipped and its
    /// time estimated from the part's, in proportion to the workgroups (a tiled kernel on
    /// lavapipe takes seconds a run at batch 1000).
    fn new(
        ctx: &GpuContext,
        dispatches: &[Dispatch],
        sampling: Sampling,
        limit: Option<f64>,
    ) -> Result<Timing> {
        let compile_seconds = compile_pipelines(ctx, dispatches)?;
        if let Some(limit) = limit {
            let part = run_timed_parts(ctx, dispatches, 1, JUDGE_PARTS)?;
            if part > limit {
                let workgroups = |w: [u32; 3]| w.iter().map(|&n| u64::from(n)).product::<u64>();
                let whole: u64 = dispatches.iter().map(|d| workgroups(d.workgroups)).sum();
                let ran: u64 = dispatches
                    .iter()
                    .map(|d| workgroups(d.part(JUDGE_PARTS)))
                    .sum();
                return Ok(Timing {
                    reps: 1,
                    fastest: part * whole as f64 / ran as f64,
                    compile_seconds,
                });
            }
        }
        let first = run_timed(ctx, dispatches, 1)?;
        let reps = (sampling.sample_seconds / first.max(1e-7))
            .ceil()
            .clamp(1.0, 1000.0) as usize;
        Ok(Timing {
            reps,
            fastest: first,
            compile_seconds,
        })
    }

    fn sample(&mut self, ctx: &GpuContext, dispatches: &[Dispatch]) -> Result<()> {
        self.fastest = self.fastest.min(run_timed(ctx, dispatches, self.reps)?);
        Ok(())
    }
}

/// Seconds per run of `dispatches`, recorded `reps` times back to back in one submit.
fn run_timed(ctx: &GpuContext, dispatches: &[Dispatch], reps: usize) -> Result<f64> {
    run_timed_parts(ctx, dispatches, reps, 1)
}

/// `run_timed` of the first `1 / parts` of each dispatch's workgroups ([`Dispatch::part`]).
fn run_timed_parts(
    ctx: &GpuContext,
    dispatches: &[Dispatch],
    reps: usize,
    parts: u32,
) -> Result<f64> {
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    let repeated: Vec<&Dispatch> = (0..reps).flat_map(|_| dispatches).collect();
    record_passes(&mut encoder, &repeated, |pass, _, d| {
        d.record_part(pass, parts)
    });
    let start = Instant::now();
    ctx.queue.submit([encoder.finish()]);
    ctx.wait()?;
    Ok(start.elapsed().as_secs_f64() / reps as f64)
}
