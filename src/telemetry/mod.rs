//! What the server tells its operators: the log (`start_log`), the metrics registry
//! (`metrics`, which imports no other room: each part reports into it), and the optional export
//! of the spans (one `rpc` span per call, with its method, request id, client
//! and code) to an OpenTelemetry collector over OTLP/gRPC, when `--otlp-endpoint` names one.
//! Off by default. Spans go out in batches from a task on the server's runtime (the exporter
//! speaks gRPC through tonic, which needs it); what is still queued is sent as the process ends.

pub mod metrics;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use std::io::IsTerminal;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::settings::{LogFormat, Settings};

/// How long one export may take: a silent collector must not hold up the stop.
const EXPORT_WAIT: Duration = Duration::from_secs(2);

/// Whether spans are exported: set once, as the exporter starts.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether this process exports spans, so that what only the export needs is recorded at all.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The exporter's pipeline, to be shut down (flushing it) as the process ends.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

/// A tracing layer that exports spans to the collector at `endpoint`
/// (`http://collector:4317`), and the pipeline behind it.
pub fn otlp_layer<S>(
    endpoint: &str,
) -> Result<
    (
        OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
        Telemetry,
    ),
    String,
>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_WAIT)
        .build()
        .map_err(|err| format!("--otlp-endpoint {endpoint}: {err}"))?;
    let processor =
        BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(Resource::builder().with_service_name("mandate").build())
        .build();
    let tracer = provider.tracer("mandate");
    EXPORTING.store(true, Ordering::Relaxed);
    Ok((
        tracing_opentelemetry::layer().with_tracer(tracer),
        Telemetry { provider },
    ))
}

impl Telemetry {
    /// Sends the spans still queued and stops the exporter. Blocks: call it off the runtime's
    /// worker threads, which run the export.
    pub fn shutdown(self) {
        if let Err(err) = self.provider.shutdown() {
            tracing::warn!(error = %err, "the last spans could not be exported");
        }
    }
}

/// Starts the log, on standard error: standard output is for what a command prints, such as
/// a new key. With `--otlp-endpoint`, spans also go to that collector; the pipeline returned is
/// to be shut down at the end.
pub fn start_log(settings: &Settings, serving: bool) -> Result<Option<Telemetry>, String> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn"));
    let terminal = std::io::stderr().is_terminal();
    let json = match settings.log_format {
        LogFormat::Auto => !terminal,
        LogFormat::Text => false,
        LogFormat::Json => true,
    };
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = if json {
        lines
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed()
    } else {
        // Colour only on a terminal, and not when `NO_COLOR` asks for none (no-color.org).
        let colour = terminal && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
        lines.with_ansi(colour).boxed()
    };
    // Only a serving process exports: `mandate probe`, run every few seconds by a container's
    // health check, and the other commands have no calls to trace.
    let (export, telemetry) = match settings.otlp_endpoint.as_ref().filter(|_| serving) {
        Some(endpoint) => {
            let (layer, telemetry) = otlp_layer(endpoint)?;
            (Some(layer), Some(telemetry))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .with(export)
        .init();
    Ok(telemetry)
}
