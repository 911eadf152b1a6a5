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
    no_huge_pages();
    let args = Args::parse();
    match args.command {
        Command::Analyze(a) => analyze(a),
        Command::Posture(p) => posture(p),
    }
}

/// Turns transparent huge pages off for this process. mimalloc asks for them on its
/// heap, and gives unused parts of it back to the kernel as it goes; on a heap that
/// turns over as fast as this one (records, strings and buffers made and freed for
/// every flow), the next touch of such a part faults in and zeroes a whole 2 MiB page.
/// That zeroing was 11 % of the CPU samples at `--threads 1` and 20 % at `--threads 2`
/// on the 1 GiB bench file (docs/performance.md, twelfth round). A failure (an old
/// kernel, a sandbox) leaves the system's setting in place: it only costs time.
fn no_huge_pages() {
    #[cfg(all(feature = "mimalloc", target_os = "linux"))]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
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
