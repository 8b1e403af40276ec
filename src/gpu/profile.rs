//! Per-kernel GPU timings of a training step. With `TIMESTAMP_QUERY_INSIDE_PASSES` the step is
//! recorded as usual (one pass) with a timestamp before and after each dispatch; with plain
//! `TIMESTAMP_QUERY`, one pass per dispatch with pass timestamps; without timestamps, one
//! submit-and-wait per dispatch timed by the host clock. The query set and its buffers are
//! created once and resolved once per step.

use std::time::Instant;

use anyhow::{anyhow, bail, Result};

use super::backend::GpuBackend;
use super::context::GpuContext;
use super::kernel::{record_passes, Cost, Dispatch};

/// How the timings were taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimingSource {
    TimestampsInsidePass,
    TimestampPerPass,
    WallClockPerPass,
}

impl TimingSource {
    pub fn describe(self) -> &'static str {
        match self {
            TimingSource::TimestampsInsidePass => "GPU timestamps inside one pass",
            TimingSource::TimestampPerPass => "GPU timestamps, one pass per kernel",
            TimingSource::WallClockPerPass => {
                "no timestamp queries on this adapter: host clock, one submit per kernel"
            }
        }
    }

    fn for_context(ctx: &GpuContext) -> TimingSource {
        let inside =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
        if ctx.features.contains(inside) {
            TimingSource::TimestampsInsidePass
        } else if ctx.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            TimingSource::TimestampPerPass
        } else {
            TimingSource::WallClockPerPass
        }
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
    pub fn new(ctx: &GpuContext) -> Profiler {
        Profiler {
            source: TimingSource::for_context(ctx),
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
        let count = 2 * net.dispatches.len() as u32;
        if self.queries.as_ref().is_none_or(|q| q.count < count) {
            self.queries = Some(Queries::new(&ctx, count));
        }
        let queries = self.queries.as_ref().expect("created above");
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        if self.source == TimingSource::TimestampsInsidePass {
            let dispatches: Vec<&Dispatch> = net.dispatches.iter().collect();
            record_passes(&mut encoder, &dispatches, |pass, i, d| {
                pass.write_timestamp(&queries.set, 2 * i as u32);
                d.record(pass);
                pass.write_timestamp(&queries.set, 2 * i as u32 + 1);
            });
        } else {
            for (i, d) in net.dispatches.iter().enumerate() {
                for copy in &d.copies {
                    copy.record(&mut encoder);
                }
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
        let origin = ticks[0];
        Ok(net
            .dispatches
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let (start, end) = (ticks[2 * i], ticks[2 * i + 1]);
                timing(
                    d,
                    start.saturating_sub(origin) as f64 * ns_per_tick / 1e3,
                    end.saturating_sub(start) as f64 * ns_per_tick / 1e3,
                )
            })
            .collect())
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
