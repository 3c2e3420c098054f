//! `convert-models`: converts scikit-learn pickles to ONNX, once, without running pickle code.
//!
//! A thin CLI over [`tools::convert`]: parses the arguments, runs the driver, prints one line
//! per model and exits 0 when every model is fine, 1 when any failed (2 for usage errors).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Converts scikit-learn `.pkl` / `.joblib` models and LightGBM text models to ONNX for the
/// inference nodes.
#[derive(Debug, Parser)]
#[command(name = "convert-models", version, about)]
struct Cli {
    /// Write `NAME.onnx` files under DIR (same relative path) instead of beside the sources.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,

    /// Convert even when the `.onnx` file already records the source's sha256.
    #[arg(long, conflicts_with = "check")]
    force: bool,

    /// Write nothing: re-verify existing `.onnx` files against the sources and golden predictions.
    #[arg(long)]
    check: bool,

    /// Model files or directories to search for `NAME.pkl` / `NAME.joblib` and LightGBM text
    /// models (recognised by content).
    #[arg(value_name = "PATH", default_value = "models/")]
    paths: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let options = tools::convert::Options {
        out_dir: cli.out_dir,
        force: cli.force,
        check: cli.check,
    };
    let ok = tools::convert::run(&cli.paths, &options, |outcome| println!("{outcome}"));
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_cli() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_flags_and_paths() {
        let cli = Cli::try_parse_from([
            "convert-models",
            "--out-dir",
            "out",
            "--force",
            "a",
            "b.pkl",
        ])
        .unwrap();
        assert_eq!(cli.out_dir, Some(PathBuf::from("out")));
        assert!(cli.force && !cli.check);
        assert_eq!(cli.paths, [PathBuf::from("a"), PathBuf::from("b.pkl")]);

        let cli = Cli::try_parse_from(["convert-models", "--check"]).unwrap();
        assert!(cli.check);
        assert_eq!(cli.paths, [PathBuf::from("models/")]);

        let err = Cli::try_parse_from(["convert-models", "--check", "--force"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = Cli::try_parse_from(["convert-models", "--bogus"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
