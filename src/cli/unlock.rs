//! `mandate unlock`: lift a customer's PIN-guessing lockout.

use crate::cli::CliError;
use crate::settings::Settings;

/// `mandate unlock CUSTOMER_ID`.
pub async fn run(settings: &Settings, customer_id: &str) -> Result<(), CliError> {
    let store = crate::server::open_store(settings).await?;
    let customer_id = customer_id.trim();
    let actor = mandate_store::Actor {
        customer_id: None,
        client: "mandate-cli".to_owned(),
    };
    if store
        .clear_pin_lockout(&actor, customer_id, settings.pin_lockout())
        .await?
        .0
    {
        eprintln!("lifted the PIN lockout of customer {customer_id}");
    } else {
        eprintln!("customer {customer_id} had no PIN attempts to forget");
    }
    Ok(())
}
