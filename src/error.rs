//! Error kinds that decide the exit code: 2 for bad input (a file, a flag, a checkpoint), 130
//! for a run stopped by Ctrl-C (the shell's code for SIGINT), 1 for anything else.

use std::fmt;

/// Something the user gave us is wrong; the message says what and where.
#[derive(Debug)]
pub struct BadInput(pub String);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// Builds a [`BadInput`] error.
pub fn bad_input(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(BadInput(message.into()))
}

/// The user stopped the run; the message says how to continue it.
#[derive(Debug)]
pub struct Interrupted(pub String);

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}

/// The GPU device went away (a driver reset, an unplugged GPU, `Device::destroy`): work on it
/// cannot go on, but what was saved before can be resumed.
#[derive(Debug)]
pub struct DeviceLost(pub String);

impl fmt::Display for DeviceLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeviceLost {}

/// 2 when any error in the chain is [`BadInput`], 130 when it is [`Interrupted`], else 1.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.chain().any(|e| e.is::<BadInput>()) {
        2
    } else if err.is::<Interrupted>() {
        130
    } else {
        1
    }
}
