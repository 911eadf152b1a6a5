use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use mtlscope::app::{self, Outcome, PostureOutcome};
use mtlscope::cli::{Args, Command};

/// See the `mimalloc` feature in Cargo.toml: records cross threads, and glibc's malloc
/// made the parallel pipeline a third slower.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit codes (see README): 0 every input analyzed (and, for `posture`, the gate passed),
/// 1 the `posture` gate failed, 2 an input could not be read or the command line was wrong.
fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Command::Analyze(a) => analyze(a),
        Command::Posture(p) => posture(p),
    }
}

fn finish<T>(result: io::Result<T>, code: impl Fn(T) -> u8) -> ExitCode {
    match result {
        Ok(o) => ExitCode::from(code(o)),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mtlscope: {e}");
            ExitCode::from(2)
        }
    }
}

fn analyze(a: mtlscope::cli::AnalyzeArgs) -> ExitCode {
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
    finish(result, |o| match o {
        Outcome::Ok => 0,
        Outcome::InputError => 2,
    })
}

fn posture(p: mtlscope::cli::PostureArgs) -> ExitCode {
    let cfg = match p.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mtlscope: {e}");
            return ExitCode::from(2);
        }
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let result =
        app::posture(&cfg, &mut out, &mut io::stderr()).and_then(|o| out.flush().map(|()| o));
    finish(result, |o| match o {
        PostureOutcome::Clean => 0,
        PostureOutcome::GateFailed => 1,
        PostureOutcome::InputError => 2,
    })
}
