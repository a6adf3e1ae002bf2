//! Progress display on standard error for long steps (hidden when standard error is not a terminal, so
//! scripts and `--json` output stay clean).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A spinner with elapsed time for a step of unknown length.
pub struct Spinner(ProgressBar);

impl Spinner {
    /// Starts spinning with `message`.
    pub fn start(message: String) -> Self {
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]") {
            bar.set_style(style);
        }
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(120));
        Self(bar)
    }

    /// Stops and clears the spinner.
    pub fn finish(self) {
        self.0.finish_and_clear();
    }
}

/// A bar over `total` steps with a rate and an ETA.
pub fn bar(total: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} [{elapsed} < {eta}]") {
        bar.set_style(style);
    }
    bar.set_message(message.to_string());
    bar
}
