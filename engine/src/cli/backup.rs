//! `hookwise backup FILE`: an online, consistent copy of the configured SQLite store.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::config::Config;
use crate::store::backup::{BackupReport, backup_sqlite};

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Config file. Default: ./hookwise.yaml when present, else the embedded default.
    #[arg(long, short, env = "HOOKWISE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The file to write. It must not exist: a backup never overwrites one.
    pub file: PathBuf,
}

/// Copies the store of the config into `args.file`; for a PostgreSQL store, says to use
/// pg_dump.
pub fn run(args: BackupArgs) -> ExitCode {
    let config = match Config::discover(args.config.as_deref()) {
        Ok(config) => config,
        Err(problems) => {
            super::print_problems(&problems);
            return ExitCode::FAILURE;
        }
    };
    let Some(store) = crate::store::sqlite_path(config.store_url.expose(), &config.base_dir) else {
        eprintln!(
            "error: the store is PostgreSQL, which hookwise backup does not copy: back it up \
             with PostgreSQL's own tools, e.g. `pg_dump --format=custom --file=hookwise.dump \
             DATABASE_URL` (restore with pg_restore)"
        );
        return ExitCode::FAILURE;
    };
    match backup_sqlite(&store, &args.file) {
        Ok(report) => {
            println!("{}", summary(&report));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `wrote FILE: 1.5 MiB (1572864 bytes), 1200 events`.
fn summary(report: &BackupReport) -> String {
    format!(
        "wrote {}: {} ({} bytes), {} event{}",
        report.path.display(),
        human_bytes(report.bytes),
        report.bytes,
        report.events,
        if report.events == 1 { "" } else { "s" }
    )
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(900), "900 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
        let report = BackupReport {
            path: PathBuf::from("/tmp/b.db"),
            bytes: 1 << 20,
            events: 1,
        };
        assert_eq!(
            summary(&report),
            "wrote /tmp/b.db: 1.0 MiB (1048576 bytes), 1 event"
        );
    }
}
