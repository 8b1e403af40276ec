//! Human output: progress bars and the metrics tables.

use indicatif::{ProgressBar, ProgressStyle};

use mnist_wgpu::text::count;
use mnist_wgpu::train::{Evaluation, Progress};

/// Runs `work` behind `message`: on a terminal a spinner with the seconds spent (a first run
/// on a CPU adapter prepares its kernels for a minute or more), else the message alone on
/// stdout. Either way the message then stays on stdout, unterminated, for the caller's result.
pub fn while_working<T>(message: &str, work: impl FnOnce() -> T) -> T {
    let spinner = ProgressBar::new_spinner();
    if spinner.is_hidden() {
        out!("{message} ");
        super::output::flush_out();
        return work();
    }
    let style = ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template");
    spinner.set_style(style);
    spinner.set_message(message.to_string());
    spinner.enable_steady_tick(std::time::Duration::from_millis(250));
    let result = work();
    spinner.finish_and_clear();
    out!("{message} ");
    result
}

static PROGRESS_BARS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turns the epochs' progress bars off (trials of a search training at once would draw over
/// each other) or back on.
pub fn set_progress_bars(on: bool) {
    PROGRESS_BARS.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// One progress bar per epoch (hidden when stderr is not a terminal, or turned off) and a
/// summary line after.
pub struct EpochProgress {
    epochs: usize,
    /// The model's classes, for the divergence warning's uniform guess.
    classes: usize,
    bar: Option<ProgressBar>,
    start: std::time::Instant,
}

impl EpochProgress {
    pub fn new(epochs: usize, classes: usize) -> Self {
        EpochProgress {
            epochs,
            classes,
            bar: None,
            start: std::time::Instant::now(),
        }
    }

    pub fn update(&mut self, progress: Progress) {
        match progress {
            Progress::EpochStart { epoch, steps } => {
                let bar = match PROGRESS_BARS.load(std::sync::atomic::Ordering::Relaxed) {
                    true => ProgressBar::new(steps as u64),
                    false => ProgressBar::hidden(),
                };
                let style = ProgressStyle::with_template(
                    "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> ");
                bar.set_style(style);
                bar.set_prefix(format!("{epoch}/{}", self.epochs));
                self.bar = Some(bar);
                self.start = std::time::Instant::now();
            }
            Progress::Running {
                step,
                loss,
                accuracy,
                examples,
                ..
            } => {
                if let Some(bar) = &self.bar {
                    let rate = examples as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
                    bar.set_position(step as u64);
                    bar.set_message(format!(
                        "loss {loss:.4} acc {:.2}% {rate:.0} img/s",
                        100.0 * accuracy
                    ));
                }
            }
            Progress::EpochEnd(stats) => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                let validation = match (stats.val_loss, stats.val_accuracy) {
                    (Some(loss), Some(accuracy)) => format!(
                        "; validation loss {loss:.4}, accuracy {:.2}%",
                        100.0 * accuracy
                    ),
                    _ => String::new(),
                };
                let sparsity = (stats.sparsity).map_or(String::new(), |s| {
                    format!("; weight sparsity {:.2}%", 100.0 * s)
                });
                outln!(
                    "epoch {}/{}: train loss {:.4}, accuracy {:.2}%, {:.1} s{validation}{sparsity}",
                    stats.epoch,
                    self.epochs,
                    stats.train_loss,
                    100.0 * stats.train_accuracy,
                    stats.seconds
                );
                if stats.diverged(self.classes) {
                    errln!(
                        "warning: epoch {}: the training loss {:.3e} is far above a uniform guess's {:.2}; the run has diverged (learning rate {} at the end of the epoch: try a smaller --lr)",
                        stats.epoch,
                        stats.train_loss,
                        mnist_wgpu::train::chance_loss(self.classes),
                        stats.lr
                    );
                }
            }
        }
    }
}

/// The metrics tables, each class named by `labels[class]` (the data set's label: a model
/// trained on `--classes 5,6,7,8,9` reports 5 to 9, not 0 to 4).
pub fn print_evaluation(eval: &Evaluation, labels: &[usize]) {
    let label = |class: usize| labels.get(class).copied().unwrap_or(class);
    let c = &eval.confusion;
    outln!(
        "\ntest accuracy {:.2}%, loss {:.4} ({})\n",
        100.0 * c.accuracy(),
        eval.loss,
        count(c.total(), "image")
    );
    outln!(
        "{:>12} {:>9} {:>9} {:>9} {:>8}",
        "class",
        "precision",
        "recall",
        "f1",
        "support"
    );
    for m in c.per_class() {
        outln!(
            "{:>12} {:>9.4} {:>9.4} {:>9.4} {:>8}",
            label(m.class),
            m.precision,
            m.recall,
            m.f1,
            m.support
        );
    }
    for (name, avg) in [
        ("macro avg", c.macro_average()),
        ("weighted avg", c.weighted_average()),
    ] {
        outln!(
            "{name:>12} {:>9.4} {:>9.4} {:>9.4} {:>8}",
            avg.precision,
            avg.recall,
            avg.f1,
            c.total()
        );
    }
    outln!("\nconfusion matrix (rows: true class, columns: predicted)");
    out!("{:>5}", "");
    (0..c.counts.len()).for_each(|j| out!("{:>6}", label(j)));
    outln!();
    for (i, row) in c.counts.iter().enumerate() {
        out!("{:>5}", label(i));
        row.iter().for_each(|n| out!("{n:>6}"));
        outln!();
    }
}

/// `rows` of cells as lines whose columns line up: each column but the last is padded to its
/// widest cell (counted in characters), with two spaces before the next; no line ends in
/// spaces.
pub fn align_columns(rows: &[Vec<String>]) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|j| {
            let cells = rows.iter().filter_map(|row| row.get(j));
            cells.map(|cell| cell.chars().count()).max().unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (j, cell) in row.iter().enumerate() {
                if j + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<width$}  ", width = widths[j]));
                }
            }
            line.trim_end().to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_starts_at_the_same_offset_in_every_row() {
        let rows: Vec<Vec<String>> = [
            ["op", "shape", "variant", "source", "timings"],
            [
                "conv2d_backward_weights+maxpool",
                "n 7, 1x28x28 -> 32 k3",
                "register-blocked",
                "tuned",
                "a 1, b 2",
            ],
            [
                "dense_forward",
                "n 7, 1600 -> 10",
                "register-blocked-texture",
                "rule",
                "",
            ],
        ]
        .iter()
        .map(|row| row.iter().map(|cell| cell.to_string()).collect())
        .collect();
        let lines = align_columns(&rows);
        let header = &lines[0];
        let offsets: Vec<usize> = rows[0]
            .iter()
            .map(|h| header.find(h.as_str()).unwrap())
            .collect();
        for (line, row) in lines.iter().zip(&rows) {
            for (cell, &offset) in row.iter().zip(&offsets) {
                let at = line.get(offset..offset + cell.len());
                assert!(cell.is_empty() || at == Some(cell), "{lines:#?}");
            }
            assert!(!line.ends_with(' '), "{line:?}");
        }
        for pair in offsets.windows(2) {
            let gap = |l: &String| l.len() < pair[1] || &l[pair[1] - 2..pair[1]] == "  ";
            assert!(lines.iter().all(gap), "{lines:#?}");
        }
    }
}
