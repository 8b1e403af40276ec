//! The recipe of a new training run: the defaults of its preset (the tutorial's for a spec
//! string or file), with every flag the user gave in their place.

use anyhow::Result;
use clap::ValueEnum;

use super::args::{AugmentChoice, TrainArgs};
use crate::cli::args::OptimizerChoice;
use mnist_wgpu::config::{Augment, Optimizer, Recipe, Schedule};

/// A new run's training settings, and the line that says where they come from.
pub(super) struct Resolved {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: Optimizer,
    pub schedule: Schedule,
    pub augment: Option<Augment>,
    /// E.g. "recipe: strong preset: 15 epochs, ...; overridden by --epochs 1".
    pub line: String,
}

/// The settings of `args`: each flag given wins over the recipe of `--arch`.
pub(super) fn resolve(args: &TrainArgs) -> Result<Resolved> {
    let arch = args.arch.arch.trim();
    let (recipe, source) = match (&args.arch.arch_file, Recipe::of_preset(arch)) {
        (Some(_), _) => (Recipe::TUTORIAL, "defaults for --arch-file".to_string()),
        (None, Some(recipe)) => (recipe, format!("{arch} preset")),
        (None, None) => (Recipe::TUTORIAL, "defaults for a spec string".to_string()),
    };
    let given = flags_given(args);
    let line = if given.is_empty() {
        format!(
            "recipe: {source}: {} (flags override these)",
            recipe.describe()
        )
    } else {
        format!(
            "recipe: {source}: {}; overridden by {}",
            recipe.describe(),
            given.join(", ")
        )
    };
    Ok(Resolved {
        epochs: args.epochs.map_or(recipe.epochs, |e| e as usize),
        batch_size: args.batch_size.map_or(recipe.batch_size, |b| b as usize),
        optimizer: args.optim.optimizer(recipe.lr)?,
        schedule: args.optim.schedule(recipe.schedule),
        augment: args.augment.augment(recipe.augment)?,
        line,
    })
}

/// The flags given that replace a part of a recipe, as "--flag value".
fn flags_given(args: &TrainArgs) -> Vec<String> {
    let name = |choice: &dyn Fn() -> Option<clap::builder::PossibleValue>| {
        choice().map_or(String::new(), |v| v.get_name().to_string())
    };
    let (optim, augment) = (&args.optim, &args.augment);
    let mut given: Vec<String> = Vec::new();
    let mut push = |flag: &str, value: Option<String>| {
        if let Some(value) = value {
            given.push(format!("--{flag} {value}"));
        }
    };
    push("epochs", args.epochs.map(|e| e.to_string()));
    push("batch-size", args.batch_size.map(|b| b.to_string()));
    push(
        "optimizer",
        (optim.optimizer != OptimizerChoice::Adam)
            .then(|| name(&|| optim.optimizer.to_possible_value())),
    );
    push("lr", optim.lr.map(|lr| lr.to_string()));
    push(
        "lr-schedule",
        optim.lr_schedule.map(|s| name(&|| s.to_possible_value())),
    );
    push(
        "augment",
        (augment.augment != AugmentChoice::Auto)
            .then(|| name(&|| augment.augment.to_possible_value())),
    );
    push(
        "augment-shift",
        augment.augment_shift.map(|x| x.to_string()),
    );
    push(
        "augment-rotation",
        augment.augment_rotation.map(|x| x.to_string()),
    );
    push(
        "augment-scale",
        augment.augment_scale.map(|x| x.to_string()),
    );
    given
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Train {
        #[command(flatten)]
        args: TrainArgs,
    }

    fn resolved(flags: &[&str]) -> Resolved {
        let argv = std::iter::once("train").chain(flags.iter().copied());
        resolve(&Train::try_parse_from(argv).unwrap().args).unwrap()
    }

    #[test]
    fn a_preset_alone_trains_with_its_recipe() {
        let r = resolved(&["--arch", "strong"]);
        assert_eq!((r.epochs, r.batch_size), (15, 128));
        assert_eq!(r.optimizer, Optimizer::adam(3e-3));
        assert_eq!(r.schedule, Schedule::OneCycle { warmup: 0.3 });
        assert_eq!(r.augment, Some(Augment::mnist()));
        assert_eq!(
            r.line,
            "recipe: strong preset: 15 epochs, batch 128, adam lr 0.003, onecycle schedule, \
             augmentation on (flags override these)"
        );

        // The default architecture is the seed preset, with the tutorial's recipe.
        for flags in [&[][..], &["--arch", "seed"]] {
            let r = resolved(flags);
            assert_eq!((r.epochs, r.batch_size), (5, 32));
            assert_eq!(r.optimizer, Optimizer::adam(1e-3));
            assert_eq!((r.schedule, r.augment), (Schedule::Constant, None));
            assert!(
                r.line.starts_with("recipe: seed preset: 5 epochs,"),
                "{}",
                r.line
            );
        }
    }

    #[test]
    fn flags_given_win_over_the_preset() {
        let r = resolved(&[
            "--arch",
            "strong",
            "--epochs",
            "1",
            "--batch-size",
            "64",
            "--lr",
            "0.01",
            "--lr-schedule",
            "cosine",
            "--augment",
            "off",
        ]);
        assert_eq!((r.epochs, r.batch_size), (1, 64));
        assert_eq!(r.optimizer, Optimizer::adam(0.01));
        assert_eq!((r.schedule, r.augment), (Schedule::Cosine, None));
        assert!(
            r.line.ends_with(
                "; overridden by --epochs 1, --batch-size 64, --lr 0.01, --lr-schedule cosine, \
                 --augment off"
            ),
            "{}",
            r.line
        );

        // One flag alone leaves the rest of the recipe.
        let r = resolved(&["--arch", "strong", "--batch-size", "256"]);
        assert_eq!((r.epochs, r.batch_size), (15, 256));
        assert_eq!(r.schedule, Schedule::OneCycle { warmup: 0.3 });
        // The recipe's one-cycle takes the flag's warm-up; its rate is Adam's, not SGD's.
        let r = resolved(&["--arch", "strong", "--warmup-fraction", "0.1"]);
        assert_eq!(r.schedule, Schedule::OneCycle { warmup: 0.1 });
        let r = resolved(&["--arch", "strong", "--optimizer", "sgd"]);
        assert_eq!(r.optimizer.lr(), 0.01);
        assert!(
            r.line.ends_with("overridden by --optimizer sgd"),
            "{}",
            r.line
        );
        assert_eq!(
            resolved(&["--arch", "strong", "--optimizer", "adamw"])
                .optimizer
                .lr(),
            3e-3
        );
    }

    #[test]
    fn spec_strings_and_files_get_the_global_defaults() {
        for flags in [
            &["--arch", "conv8k3-relu-flatten-dense10"][..],
            &["--arch-file", "model.arch"],
        ] {
            let r = resolved(flags);
            assert_eq!((r.epochs, r.batch_size), (5, 32));
            assert_eq!(r.optimizer, Optimizer::adam(1e-3));
            assert_eq!((r.schedule, r.augment), (Schedule::Constant, None));
            assert!(r.line.starts_with("recipe: defaults for "), "{}", r.line);
        }
        let r = resolved(&["--arch", "conv8k3-relu-flatten-dense10", "--epochs", "2"]);
        assert_eq!(
            r.line,
            "recipe: defaults for a spec string: 5 epochs, batch 32, adam lr 0.001, constant \
             schedule, augmentation off; overridden by --epochs 2"
        );
    }
}
