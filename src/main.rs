use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use mtlscope::app::{self, Outcome};
use mtlscope::cli::{Args, Command};

/// See the `mimalloc` feature in Cargo.toml: records cross threads, and glibc's malloc
/// made the parallel pipeline a third slower.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit codes (see README): 0 every input analyzed, 2 an input could not be read or the
/// command line was wrong.
fn main() -> ExitCode {
    let args = Args::parse();
    let Command::Analyze(a) = args.command;
    let cfg = match a.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mtlscope: {e}");
            return ExitCode::from(2);
        }
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let result = app::run(&cfg, &mut out, &mut io::stderr()).and_then(|o| out.flush().map(|()| o));
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::InputError) => ExitCode::from(2),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mtlscope: {e}");
            ExitCode::from(2)
        }
    }
}
