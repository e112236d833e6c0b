//! `mandate seed`: a generated data set, and mandate-bench's sample.

use crate::cli::{CliError, progress_line};
use crate::settings::Settings;

/// `mandate seed …`.
pub async fn run(
    settings: &Settings,
    customers: usize,
    contractors: usize,
    applications: usize,
    seed: Option<u64>,
    sample: Option<&std::path::Path>,
) -> Result<(), CliError> {
    let seed = match seed {
        Some(seed) => seed,
        None => {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes)
                .map_err(|err| CliError::Failed(format!("no random seed: {err}")))?;
            u64::from_le_bytes(bytes)
        }
    };
    let store = crate::server::open_store(settings).await?;
    let vault = crate::server::open_vault(settings, &store).await?;
    let started = std::time::Instant::now();
    let options = crate::ops::seed::SeedOptions {
        customers,
        contractors,
        applications,
        seed,
        sample,
    };
    let mut progress = progress_line("");
    let summary = crate::ops::seed::seed(&store, &vault, &options, &mut progress).await?;
    let counts = summary.counts;
    println!(
        "seeded {} customers, {} accounts, {} memberships, {} application links in {:.1} s \
         (seed {seed}); revision {}",
        counts.customers,
        counts.contractors,
        counts.memberships,
        counts.links,
        started.elapsed().as_secs_f64(),
        summary.revision
    );
    if let (Some(path), Some(entries)) = (sample, summary.sample_entries) {
        println!(
            "benchmark sample: {entries} entries in {} (mode 600: it holds PINs)",
            path.display()
        );
    }
    Ok(())
}
