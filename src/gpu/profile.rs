//! Per-kernel GPU timings of a training step. With `TIMESTAMP_QUERY_INSIDE_PASSES` the step is
//! recorded as usual (one pass, split where texture copies come between) with a timestamp
//! before and after each dispatch; with plain `TIMESTAMP_QUERY`, one pass per dispatch with pass
//! timestamps; without timestamps, one submit-and-wait per dispatch timed by the host clock
//! (which includes the copies before it and the submit's cost). With
//! `TIMESTAMP_QUERY_INSIDE_ENCODERS`, both timestamp methods also time each group of texture
//! copies (reported as `copy_buffer_to_texture`). The best method the device offers is the
//! default; `Profiler::with_source` takes another (to compare them). The query set and its
//! buffers are created once and resolved once per step.

use std::time::Instant;

use anyhow::{anyhow, bail, Result};

use super::backend::GpuBackend;
use super::context::GpuContext;
use super::kernel::{record_passes_with_copies, Cost, Dispatch};
use crate::backend::Backend;

/// How the timings are taken, best first (`profile --timing` names them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimingSource {
    TimestampsInsidePass,
    TimestampPerPass,
    WallClockPerPass,
}

impl TimingSource {
    pub const ALL: [TimingSource; 3] = [
        TimingSource::TimestampsInsidePass,
        TimingSource::TimestampPerPass,
        TimingSource::WallClockPerPass,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            TimingSource::TimestampsInsidePass => "GPU timestamps inside one pass",
            TimingSource::TimestampPerPass => "GPU timestamps, one pass per kernel",
            TimingSource::WallClockPerPass => "host clock, one submit per kernel",
        }
    }

    /// The adapter features this method needs.
    fn needs(self) -> wgpu::Features {
        match self {
            TimingSource::TimestampsInsidePass => {
                wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
            }
            TimingSource::TimestampPerPass => wgpu::Features::TIMESTAMP_QUERY,
            TimingSource::WallClockPerPass => wgpu::Features::empty(),
        }
    }

    /// The best method a device with `features` offers.
    pub fn best(features: wgpu::Features) -> TimingSource {
        TimingSource::offered(features)[0]
    }

    /// The methods a device with `features` offers, best first (the host clock always).
    pub fn offered(features: wgpu::Features) -> Vec<TimingSource> {
        TimingSource::ALL
            .into_iter()
            .filter(|s| features.contains(s.needs()))
            .collect()
    }
}

/// One dispatch of a profiled step, times in microseconds from the step's first timestamp.
#[derive(Clone, Debug)]
pub struct DispatchTiming {
    pub kernel: &'static str,
    /// The kernel variant, for ops that have several (else empty).
    pub variant: &'static str,
    pub cost: Cost,
    pub workgroups: [u32; 3],
    pub start_us: f64,
    pub duration_us: f64,
}

/// Times the dispatches of training steps; holds the query set between steps.
pub struct Profiler {
    pub source: TimingSource,
    queries: Option<Queries>,
}

struct Queries {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    count: u32,
}

impl Profiler {
    /// A profiler with the best method the device offers.
    pub fn new(ctx: &GpuContext) -> Profiler {
        Profiler::with_source(TimingSource::best(ctx.features))
    }

    /// A profiler that times with `source`, which the device must offer
    /// ([`TimingSource::offered`]).
    pub fn with_source(source: TimingSource) -> Profiler {
        Profiler {
            source,
            queries: None,
        }
    }

    /// Runs one training step on `indices` and times each of its dispatches.
    pub fn profile_step(
        &mut self,
        backend: &mut GpuBackend,
        indices: &[u32],
    ) -> Result<Vec<DispatchTiming>> {
        let ctx = backend.context().clone();
        let net = backend.prepare_train_step(indices)?;
        if self.source == TimingSource::WallClockPerPass {
            return wall_clock_per_pass(&ctx, &net.dispatches);
        }
        let n = net.dispatches.len();
        // The texture copies before a dispatch get a pair of timestamps too, where the adapter
        // writes timestamps between passes: they are part of the step.
        let time_copies = ctx
            .features
            .contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS);
        let copy_slots: Vec<Option<usize>> = net
            .dispatches
            .iter()
            .scan(n, |next, d| {
                let timed = time_copies && !d.copies.is_empty();
                *next += usize::from(timed);
                Some(timed.then_some(*next - 1))
            })
            .collect();
        let slots = n + copy_slots.iter().flatten().count();
        let count = 2 * slots as u32;
        if self.queries.as_ref().is_none_or(|q| q.count < count) {
            self.queries = Some(Queries::new(&ctx, count));
        }
        let queries = self.queries.as_ref().expect("created above");
        let copies = |encoder: &mut wgpu::CommandEncoder, i: usize, d: &Dispatch| {
            let Some(slot) = copy_slots[i] else {
                return d.record_copies(encoder);
            };
            encoder.write_timestamp(&queries.set, 2 * slot as u32);
            d.record_copies(encoder);
            encoder.write_timestamp(&queries.set, 2 * slot as u32 + 1);
        };
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        if self.source == TimingSource::TimestampsInsidePass {
            let dispatches: Vec<&Dispatch> = net.dispatches.iter().collect();
            record_passes_with_copies(&mut encoder, &dispatches, copies, |pass, i, d| {
                pass.write_timestamp(&queries.set, 2 * i as u32);
                d.record(pass);
                pass.write_timestamp(&queries.set, 2 * i as u32 + 1);
            });
        } else {
            for (i, d) in net.dispatches.iter().enumerate() {
                copies(&mut encoder, i, d);
                let writes = wgpu::ComputePassTimestampWrites {
                    query_set: &queries.set,
                    beginning_of_pass_write_index: Some(2 * i as u32),
                    end_of_pass_write_index: Some(2 * i as u32 + 1),
                };
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(d.kernel),
                    timestamp_writes: Some(writes),
                });
                d.record(&mut pass);
            }
        }
        encoder.resolve_query_set(&queries.set, 0..count, &queries.resolve, 0);
        encoder.copy_buffer_to_buffer(
            &queries.resolve,
            0,
            &queries.readback,
            0,
            8 * u64::from(count),
        );
        ctx.queue.submit([encoder.finish()]);
        let ticks = queries.read(&ctx, count as usize)?;
        let ns_per_tick = f64::from(ctx.queue.get_timestamp_period());
        let origin = (0..slots).map(|s| ticks[2 * s]).min().unwrap_or(0);
        // Microseconds from the step's first timestamp to slot s's start, and its duration.
        let span = |s: usize| {
            let (start, end) = (ticks[2 * s], ticks[2 * s + 1]);
            (
                start.saturating_sub(origin) as f64 * ns_per_tick / 1e3,
                end.saturating_sub(start) as f64 * ns_per_tick / 1e3,
            )
        };
        let mut timings = Vec::with_capacity(slots);
        for (i, d) in net.dispatches.iter().enumerate() {
            if let Some(slot) = copy_slots[i] {
                let (start, duration) = span(slot);
                timings.push(copy_timing(d, start, duration));
            }
            let (start, duration) = span(i);
            timings.push(timing(d, start, duration));
        }
        Ok(timings)
    }
}

/// The name under which the profiler reports the texture copies before a dispatch.
pub const TEXTURE_COPIES: &str = "copy_buffer_to_texture";

/// The timing of the texture copies that come before `d`.
fn copy_timing(d: &Dispatch, start_us: f64, duration_us: f64) -> DispatchTiming {
    DispatchTiming {
        kernel: TEXTURE_COPIES,
        variant: d.variant,
        cost: Cost {
            shape: d.cost.shape.clone(),
            flops: 0,
            bytes: d.copied_bytes(),
        },
        workgroups: [0; 3],
        start_us,
        duration_us,
    }
}

fn timing(d: &Dispatch, start_us: f64, duration_us: f64) -> DispatchTiming {
    DispatchTiming {
        kernel: d.kernel,
        variant: d.variant,
        cost: d.cost.clone(),
        workgroups: d.workgroups,
        start_us,
        duration_us,
    }
}

fn wall_clock_per_pass(ctx: &GpuContext, dispatches: &[Dispatch]) -> Result<Vec<DispatchTiming>> {
    ctx.wait()?;
    let origin = Instant::now();
    let mut timings = Vec::with_capacity(dispatches.len());
    for d in dispatches {
        let start = origin.elapsed().as_secs_f64() * 1e6;
        super::kernel::run(ctx, &[d]);
        ctx.wait()?;
        timings.push(timing(
            d,
            start,
            origin.elapsed().as_secs_f64() * 1e6 - start,
        ));
    }
    Ok(timings)
}

impl Queries {
    fn new(ctx: &GpuContext, count: u32) -> Queries {
        let set = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profiler timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let buffer = |label, usage| {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 8 * u64::from(count),
                usage,
                mapped_at_creation: false,
            })
        };
        let resolve = buffer(
            "timestamps",
            wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        );
        let readback = buffer(
            "timestamps read-back",
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        Queries {
            set,
            resolve,
            readback,
            count,
        }
    }

    fn read(&self, ctx: &GpuContext, count: usize) -> Result<Vec<u64>> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.readback.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        ctx.wait()?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("timestamp read-back failed: {e}"),
            Err(_) => bail!("timestamp read-back was never completed"),
        }
        let ticks = {
            let view = self
                .readback
                .get_mapped_range(..)
                .map_err(|e| anyhow!("timestamp read-back failed: {e}"))?;
            bytemuck::pod_collect_to_vec::<u8, u64>(&view[..8 * count])
        };
        self.readback.unmap();
        Ok(ticks)
    }
}

/// Profiled steps and the wall-clock time of the training steps timed beside them.
pub struct ProfiledRun {
    pub steps: Vec<Vec<DispatchTiming>>,
    /// Mean microseconds per timed step (one submit a step, as training runs them).
    pub step_us: f64,
}

/// Profiles `steps` training steps, each after a block of `block` steps timed as training runs
/// them (one submit a step, waiting only after the block), so that the kernel times and the
/// step time they are compared with come from the same moments: lavapipe on a shared CPU
/// changes speed by half within minutes, and a step time taken before the profiled steps read
/// them as 78 to 120% of the step. `batch(i)` gives the examples of the `i`-th step.
pub fn profile_beside_timed_steps(
    profiler: &mut Profiler,
    backend: &mut GpuBackend,
    (steps, block): (usize, usize),
    batch: impl Fn(usize) -> Vec<u32>,
) -> Result<ProfiledRun> {
    let mut timed_seconds = 0.0;
    let mut profiled = Vec::with_capacity(steps);
    let mut next = 0;
    for _ in 0..steps {
        let start = Instant::now();
        for _ in 0..block {
            backend.train_step(&batch(next))?;
            next += 1;
        }
        backend.take_train_stats()?;
        timed_seconds += start.elapsed().as_secs_f64();
        profiled.push(profiler.profile_step(backend, &batch(next))?);
        next += 1;
        backend.take_train_stats()?;
    }
    Ok(ProfiledRun {
        steps: profiled,
        step_us: timed_seconds * 1e6 / (steps * block).max(1) as f64,
    })
}

/// Mean kernel time per step, in microseconds: the sum of every dispatch's duration. Where the
/// GPU overlaps independent dispatches this exceeds the time the GPU was busy.
pub fn kernel_us_per_step(steps: &[Vec<DispatchTiming>]) -> f64 {
    let total: f64 = steps.iter().flatten().map(|t| t.duration_us).sum();
    total / steps.len().max(1) as f64
}

/// Mean time per step during which at least one kernel ran, in microseconds: the length of the
/// union of the dispatches' intervals, so overlapping dispatches count once.
pub fn busy_us_per_step(steps: &[Vec<DispatchTiming>]) -> f64 {
    let total: f64 = steps.iter().map(|step| busy_us(step)).sum();
    total / steps.len().max(1) as f64
}

fn busy_us(step: &[DispatchTiming]) -> f64 {
    union_length(
        step.iter()
            .map(|t| (t.start_us, t.start_us + t.duration_us))
            .collect(),
    )
}

/// The total length covered by the (start, end) intervals.
fn union_length(mut intervals: Vec<(f64, f64)>) -> f64 {
    intervals.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut busy = 0.0;
    let mut covered_to = f64::NEG_INFINITY;
    for (start, end) in intervals {
        busy += (end - start.max(covered_to)).max(0.0);
        covered_to = covered_to.max(end);
    }
    busy
}

#[cfg(test)]
mod tests {
    use super::union_length;

    #[test]
    fn overlapping_kernels_count_once_and_gaps_not_at_all() {
        assert_eq!(union_length(vec![]), 0.0);
        assert_eq!(union_length(vec![(0.0, 2.0), (5.0, 6.0)]), 3.0);
        // Out of order, one inside another, one overlapping the end.
        assert_eq!(
            union_length(vec![(4.0, 10.0), (0.0, 3.0), (5.0, 6.0), (9.0, 12.0)]),
            11.0
        );
    }
}
