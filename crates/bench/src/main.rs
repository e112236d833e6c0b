//! `mandate-bench`: throughput and latency of Mandate's hot RPCs against a running server.
//!
//! Each scenario keeps calls going over `--connections` connections for `--warmup-secs`
//! (discarded), then for `--duration-secs` (measured): closed loop by default (`--in-flight`
//! calls in flight at all times), or open loop at a fixed `--rate` of calls a second, whose
//! latency runs from the moment a call was due to be sent, so a server that falls behind shows
//! it in the percentiles rather than hiding it (no coordinated omission). Percentiles come from
//! an HdrHistogram (p50, p90, p99, p99.9, max). The Health check runs first, with the same
//! client and connections, as the empty-RPC floor; every scenario is also reported as a ratio
//! to it. `--json FILE` writes the table as JSON too.
//!
//! Scenarios (`--scenario`, repeatable; all by default): `check` (CheckPermission on an
//! account), `check-by-application`, `batch` (CheckPermissions of 100 checks), `list-accessible`
//! (ListAccessibleApplications), `set-permissions` (a Manager changes a non-Manager associate)
//! and `associate-by-pin` (a new customer registers and enters a PIN: two calls, timed
//! together, as a first sign-in does), and `denied-batch` (CheckPermissions of 100 checks that
//! are all denied, the denied-check trail's load). Every check's answer is compared with the expected one;
//! a wrong answer counts as an error.
//!
//! With `--http URL` (the server's HTTP listener), two more: `http-floor` (a path no route
//! serves, answered 404 by the listener itself: the HTTP floor) and `http-check` (the `check`
//! scenario's CheckPermission as JSON, `POST /v1/checks:check`), over HTTP/1.1 with up to
//! `--in-flight` keep-alive connections, or with `--http2` over `--connections` h2c connections.
//!
//! The data comes from `--sample FILE`, written by `mandate seed --sample FILE`; without it the
//! benchmark registers a little data of its own (unique names, so any database will do).
//! `--iterations N` also times CheckPermission and SetPermissions one call after another first;
//! `--guessers N` keeps N clients entering wrong PINs throughout (`--guesses-per-customer K`:
//! each registering a fresh customer every K guesses); `--merge-associates N` times
//! MergeContractors of two accounts with N associates each.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use mandate::CUSTOMER_HEADER;
use mandate::ops::sample::{self, Entry};
use mandate::pb::contractor_service_client::ContractorServiceClient;
use mandate::pb::identity_service_client::IdentityServiceClient;
use mandate::pb::permission_service_client::PermissionServiceClient;
use mandate::pb::{
    AssociateByPinRequest, CheckPermissionRequest, CheckPermissionsRequest, Contact,
    LinkApplicationRequest, ListAccessibleApplicationsRequest, MailingAddress,
    MergeContractorsRequest, Permission, RegisterContractorRequest, RegisterCustomerRequest,
    SetPermissionsRequest, check_permissions_result,
};
use mandate_domain::pin::Pin;
use tonic::Request;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Measures Mandate's hot RPCs against a running server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The server to measure.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// An API key with the portal, check and records scopes (the bootstrap key will do).
    #[arg(long, env = "MANDATE_API_KEY", hide_env_values = true)]
    key: String,
    /// The sample written by `mandate seed --sample`; without it the benchmark registers its
    /// own data.
    #[arg(long)]
    sample: Option<std::path::PathBuf>,
    /// A scenario to run; repeat for several. All of them by default.
    #[arg(long = "scenario", value_enum)]
    scenarios: Vec<Scenario>,
    /// Connections the calls are spread over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Calls in flight at once across the connections (closed loop).
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Calls a second, sent on schedule whatever the answers (open loop), instead of keeping
    /// `--in-flight` calls going.
    #[arg(long)]
    rate: Option<u32>,
    /// Seconds of each scenario before measuring starts.
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// Seconds each scenario is measured.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// The server's HTTP listener (`http://127.0.0.1:8080`), for the http-floor and http-check
    /// scenarios.
    #[arg(long)]
    http: Option<String>,
    /// Over HTTP/2 without TLS (h2c), multiplexed over `--connections`, rather than HTTP/1.1.
    #[arg(long)]
    http2: bool,
    /// Time CheckPermission and SetPermissions this many times one call after another first;
    /// 0 to skip.
    #[arg(long, default_value_t = 0)]
    iterations: usize,
    /// Untimed calls per RPC before the one-at-a-time timing starts.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Concurrent clients entering wrong PINs (AssociateByPin) while the scenarios run.
    #[arg(long, default_value_t = 0)]
    guessers: usize,
    /// Each guesser registers a fresh customer every this many guesses (guessing spread across
    /// customers, under each one's lockout); 0 to guess as one customer throughout.
    #[arg(long, default_value_t = 0)]
    guesses_per_customer: u64,
    /// Wrong PINs a second across all guessers; 0 for as fast as they can.
    #[arg(long, default_value_t = 0)]
    guess_rate: u32,
    /// Also time MergeContractors (the key needs the staff scope) of two accounts with this
    /// many associates each, half of them on both; 0 to skip.
    #[arg(long, default_value_t = 0)]
    merge_associates: usize,
}

/// What a scenario calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Check,
    CheckByApplication,
    Batch,
    ListAccessible,
    SetPermissions,
    AssociateByPin,
    /// CheckPermissions of 100 checks that are all denied: the denied-check trail's load.
    DeniedBatch,
    /// CheckPermissions of 100 checks by application, half of them allowed.
    BatchByApplication,
    /// CheckPermissions of 100 checks, every other one by application.
    MixedBatch,
    /// A path the HTTP listener routes nowhere, answered 404 by the listener: the HTTP floor.
    HttpFloor,
    /// The check scenario's CheckPermission, as JSON over HTTP.
    HttpCheck,
}

impl Scenario {
    const ALL: [Scenario; 11] = [
        Scenario::Check,
        Scenario::CheckByApplication,
        Scenario::Batch,
        Scenario::BatchByApplication,
        Scenario::MixedBatch,
        Scenario::ListAccessible,
        Scenario::SetPermissions,
        Scenario::AssociateByPin,
        Scenario::DeniedBatch,
        Scenario::HttpFloor,
        Scenario::HttpCheck,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::Check => "check",
            Scenario::CheckByApplication => "check-by-application",
            Scenario::Batch => "batch",
            Scenario::ListAccessible => "list-accessible",
            Scenario::SetPermissions => "set-permissions",
            Scenario::AssociateByPin => "associate-by-pin",
            Scenario::DeniedBatch => "denied-batch",
            Scenario::BatchByApplication => "batch-by-application",
            Scenario::MixedBatch => "mixed-batch",
            Scenario::HttpFloor => "http-floor",
            Scenario::HttpCheck => "http-check",
        }
    }
}

type Failure = Box<dyn std::error::Error>;

/// The data the scenarios draw on: what to ask, and what the answer must be.
#[derive(Default)]
struct Sample {
    /// (customer, account, permission, allowed).
    checks: Vec<(String, String, Permission, bool)>,
    /// (application, permission, a customer who may, one who may not).
    applications: Vec<(String, Permission, String, String)>,
    /// (account, PIN).
    pins: Vec<(String, String)>,
    /// (account, a Manager, an associate who is not one).
    managed: Vec<(String, String, String)>,
}

impl Sample {
    /// Reads the sample `mandate seed --sample` wrote.
    fn read(path: &std::path::Path) -> Result<Self, Failure> {
        let mut reader = csv::Reader::from_path(path)
            .map_err(|e| format!("cannot read the sample {}: {e}", path.display()))?;
        let header: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
        if header != sample::COLUMNS {
            return Err(format!(
                "{} is not a sample of `mandate seed` (its columns are {header:?})",
                path.display()
            )
            .into());
        }
        let mut sample = Sample::default();
        for record in reader.records() {
            match Entry::read(&record?)? {
                Entry::Check {
                    contractor_id,
                    customer_id,
                    permission,
                    allowed,
                } => sample
                    .checks
                    .push((customer_id, contractor_id, permission.into(), allowed)),
                Entry::Application {
                    application_id,
                    permission,
                    may,
                    may_not,
                } => sample
                    .applications
                    .push((application_id, permission.into(), may, may_not)),
                Entry::Pin { contractor_id, pin } => sample.pins.push((contractor_id, pin)),
                Entry::Manage {
                    contractor_id,
                    manager,
                    associate,
                } => sample.managed.push((contractor_id, manager, associate)),
            }
        }
        Ok(sample)
    }

    /// Registers a little data on a server of any content: an account with its Manager, an
    /// associate holding Pay, a second associate for SetPermissions, a customer of no account,
    /// and an application linked to the account.
    async fn register(channel: &Authed, run: u128) -> Result<Self, Failure> {
        let mut identity = IdentityServiceClient::new(channel.clone());
        let mut contractors = ContractorServiceClient::new(channel.clone());
        let mut permissions = PermissionServiceClient::new(channel.clone());
        let mut customer = async |name: &str| -> Result<String, Failure> {
            Ok(identity
                .register_customer(RegisterCustomerRequest {
                    external_subject: format!("bench|{run}|{name}"),
                    display_name: format!("Bench {name}"),
                    email: format!("{name}@bench.example.ca"),
                })
                .await?
                .into_inner()
                .customer
                .ok_or("no customer in the response")?
                .customer_id)
        };
        let manager = customer("manager").await?;
        let associate = customer("associate").await?;
        let worker = customer("worker").await?;
        let outsider = customer("outsider").await?;
        let registered = contractors
            .register_contractor(acting(
                &manager,
                bench_account("Bench Builders Inc.".into()),
            )?)
            .await?
            .into_inner();
        let account = registered
            .contractor
            .ok_or("no contractor in the response")?
            .contractor_id;
        for member in [&associate, &worker] {
            contractors
                .associate_by_pin(acting(
                    member,
                    AssociateByPinRequest {
                        pin: registered.pin.clone(),
                    },
                )?)
                .await?;
        }
        permissions
            .set_permissions(acting(
                &manager,
                SetPermissionsRequest {
                    contractor_id: account.clone(),
                    customer_id: associate.clone(),
                    permissions: vec![Permission::Pay as i32],
                    expire_time: None,
                },
            )?)
            .await?;
        let application = format!("{}-{:06} BLD", 20 + run % 7, run % 1_000_000);
        permissions
            .link_application(LinkApplicationRequest {
                application_id: application.clone(),
                contractor_id: account.clone(),
            })
            .await?;
        Ok(Sample {
            checks: vec![
                (associate.clone(), account.clone(), Permission::Pay, true),
                (
                    associate.clone(),
                    account.clone(),
                    Permission::Manage,
                    false,
                ),
                (manager.clone(), account.clone(), Permission::Apply, true),
                (outsider.clone(), account.clone(), Permission::Pay, false),
            ],
            applications: vec![(application, Permission::Pay, associate, outsider)],
            pins: vec![(account.clone(), registered.pin)],
            managed: vec![(account, manager, worker)],
        })
    }

    /// Whether `scenario` has what it needs.
    fn serves(&self, scenario: Scenario) -> bool {
        match scenario {
            Scenario::Check | Scenario::Batch | Scenario::ListAccessible | Scenario::HttpCheck => {
                !self.checks.is_empty()
            }
            Scenario::HttpFloor => true,
            Scenario::CheckByApplication | Scenario::BatchByApplication => {
                !self.applications.is_empty()
            }
            Scenario::MixedBatch => !self.checks.is_empty() && !self.applications.is_empty(),
            Scenario::SetPermissions => !self.managed.is_empty(),
            Scenario::AssociateByPin => !self.pins.is_empty(),
            Scenario::DeniedBatch => self.checks.iter().any(|c| !c.3),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let args = Args::parse();
    let key: MetadataValue<Ascii> = format!("Bearer {}", args.key.trim()).parse()?;
    let mut pool = Vec::new();
    for _ in 0..args.connections.max(1) {
        pool.push(Link {
            grpc: InterceptedService::new(
                Channel::from_shared(args.target.clone())?.connect().await?,
                WithKey(key.clone()),
            ),
            http: args
                .http
                .as_ref()
                .map(|base| Http::new(base, args.key.trim(), args.http2)),
        });
    }
    let channel = pool[0].grpc.clone();
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let sample = Arc::new(match &args.sample {
        Some(path) => Sample::read(path)?,
        None => Sample::register(&channel, run).await?,
    });
    let scenarios: Vec<Scenario> = if args.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenarios.clone()
    };

    let guesser = IdentityServiceClient::new(channel.clone())
        .register_customer(RegisterCustomerRequest {
            external_subject: format!("bench|{run}|guesser"),
            display_name: "Bench guesser".into(),
            email: "guesser@bench.example.ca".into(),
        })
        .await?
        .into_inner()
        .customer
        .ok_or("no customer in the response")?
        .customer_id;
    let guessing = Guessing::start(
        &channel,
        &guesser,
        args.guessers,
        args.guess_rate,
        (args.guesses_per_customer > 0).then_some((args.guesses_per_customer, run)),
    );

    let sequential = if args.iterations > 0 {
        Some(one_at_a_time(&channel, run, args.warmup, args.iterations).await?)
    } else {
        None
    };

    let load = Load {
        pool: pool.clone(),
        in_flight: args.in_flight.max(1),
        rate: args.rate,
        warmup: Duration::from_secs(args.warmup_secs),
        duration: Duration::from_secs(args.duration_secs.max(1)),
    };
    let mut results = vec![("health (floor)", load.run(health_call()).await?)];
    let joins = Arc::new(AtomicU64::new(0));
    for scenario in scenarios {
        let http = matches!(scenario, Scenario::HttpFloor | Scenario::HttpCheck);
        if http && args.http.is_none() {
            eprintln!("skipping {}: no --http listener given", scenario.name());
            continue;
        }
        if !sample.serves(scenario) {
            eprintln!(
                "skipping {}: the sample has nothing for it",
                scenario.name()
            );
            continue;
        }
        let call = scenario_call(scenario, sample.clone(), run, joins.clone());
        results.push((scenario.name(), load.run(call).await?));
    }
    let guesses = guessing.stop().await?;
    let mut merges = Vec::new();
    for round in 0..MERGE_ROUNDS.min(args.merge_associates) {
        merges.push(time_merge(&channel, &format!("{run}-{round}"), args.merge_associates).await?);
    }

    if let Some((check, set)) = sequential {
        println!(
            "target {} — {} timed calls per RPC, one at a time",
            args.target, args.iterations
        );
        println!(
            "{:<16} {:>10} {:>10} {:>10} {:>10}",
            "rpc", "p50 ms", "p99 ms", "max ms", "calls/s"
        );
        report("CheckPermission", check);
        report("SetPermissions", set);
        println!();
    }
    let mode = match args.rate {
        Some(rate) => format!("open loop at {rate} calls/s"),
        None => format!("closed loop, {} in flight", load.in_flight),
    };
    println!(
        "target {} — {mode} over {} connections; {} s warm-up, {} s measured per scenario; \
         data: {}",
        args.target,
        pool.len(),
        args.warmup_secs,
        load.duration.as_secs(),
        match &args.sample {
            Some(path) => format!("sample {}", path.display()),
            None => "registered by the benchmark".to_owned(),
        }
    );
    print_table(&results);
    if let Some(path) = &args.json {
        std::fs::write(path, json(&args, &mode, &results))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if !merges.is_empty() {
        let ms: Vec<String> = merges
            .iter()
            .map(|d| format!("{:.1}", d.as_secs_f64() * 1000.0))
            .collect();
        println!(
            "MergeContractors of two accounts with {} associates each ({} on both): {} ms",
            args.merge_associates,
            args.merge_associates / 2,
            ms.join(", ")
        );
    }
    if let Some((count, elapsed)) = guesses {
        println!(
            "meanwhile {} clients entered {count} wrong PINs, {:.0} a second, each refused \
             (NOT_FOUND, or RESOURCE_EXHAUSTED once the lockout applies)",
            args.guessers,
            count as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
        );
    }
    let errors: u64 = results.iter().map(|(_, m)| m.errors).sum();
    if errors > 0 {
        return Err(format!("{errors} calls failed or answered wrongly").into());
    }
    Ok(())
}

/// What one call did: the decisions it carried (checks answered), or why it failed.
type Outcome = Result<u64, String>;

/// One call of a scenario on a connection; `n` numbers the calls, to vary what they ask.
type Call =
    Arc<dyn Fn(Link, u64) -> std::pin::Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;

/// One connection's clients: gRPC, and HTTP when `--http` is given.
#[derive(Clone)]
struct Link {
    grpc: Authed,
    http: Option<Http>,
}

/// A client of the HTTP listener: HTTP/1.1 keep-alive connections as needed, or one h2c
/// connection.
#[derive(Clone)]
struct Http {
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
    base: String,
    authorization: String,
}

impl Http {
    fn new(base: &str, key: &str, http2: bool) -> Self {
        // No Nagle delay, as tonic's channels: an HTTP/2 request is several frames.
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(http2)
                .pool_max_idle_per_host(usize::MAX)
                .build(connector);
        Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            authorization: format!("Bearer {key}"),
        }
    }

    /// `method path` with a JSON `body`: the status and the body.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: String,
    ) -> Result<(u16, bytes::Bytes), String> {
        use http_body_util::BodyExt;
        let request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", &self.authorization)
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }
}

/// A check as the proto3 JSON of its request.
fn check_json(entry: &(String, String, Permission, bool)) -> String {
    serde_json::json!({
        "customerId": entry.0,
        "permission": entry.2.as_str_name(),
        "contractorId": entry.1,
    })
    .to_string()
}

/// Checks in each `CheckPermissions` call of the batch scenario.
const BATCH_ITEMS: usize = 100;

/// A number in `0..n` picked from `x` (a call number), spread well.
fn spread(x: u64, n: usize) -> usize {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    ((u128::from(z) * n as u128) >> 64) as usize
}

fn health_call() -> Call {
    Arc::new(|Link { grpc: channel, .. }: Link, _| {
        Box::pin(async move {
            tonic_health::pb::health_client::HealthClient::new(channel)
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .map(|_| 0)
                .map_err(|status| status.to_string())
        })
    })
}

/// One `CheckPermission`, its answer compared with `expected`; `what` names it in the error.
async fn checked(
    channel: Authed,
    request: CheckPermissionRequest,
    expected: bool,
    what: &str,
) -> Outcome {
    let decision = PermissionServiceClient::new(channel)
        .check_permission(request)
        .await
        .map_err(|status| status.to_string())?
        .into_inner();
    if decision.allowed == expected {
        Ok(1)
    } else {
        Err(format!(
            "{what} answered {decision:?}, expected allowed = {expected}"
        ))
    }
}

fn check_request(entry: &(String, String, Permission, bool)) -> CheckPermissionRequest {
    CheckPermissionRequest {
        customer_id: entry.0.clone(),
        permission: entry.2 as i32,
        contractor_id: entry.1.clone(),
        application_id: String::new(),
        at_least_revision: 0,
    }
}

/// A check on an application, by the customer who may (`allowed`) or the one who may not.
fn application_request(
    entry: &(String, Permission, String, String),
    allowed: bool,
) -> CheckPermissionRequest {
    let (application, permission, may, may_not) = entry;
    CheckPermissionRequest {
        customer_id: if allowed { may } else { may_not }.clone(),
        permission: *permission as i32,
        contractor_id: String::new(),
        application_id: application.clone(),
        at_least_revision: 0,
    }
}

/// Checks on the account of each of `checks`, with the answers they must have.
fn account_checks(
    checks: &[(String, String, Permission, bool)],
) -> Vec<(CheckPermissionRequest, bool)> {
    checks.iter().map(|c| (check_request(c), c.3)).collect()
}

/// Checks on each of `applications`, by a customer who may and one who may not.
fn application_checks(
    applications: &[(String, Permission, String, String)],
) -> Vec<(CheckPermissionRequest, bool)> {
    applications
        .iter()
        .flat_map(|a| {
            [
                (application_request(a, true), true),
                (application_request(a, false), false),
            ]
        })
        .collect()
}

/// CheckPermissions of `BATCH_ITEMS` checks drawn from `checks`, every answer verified.
fn batch_call(checks: Vec<(CheckPermissionRequest, bool)>) -> Call {
    Arc::new(move |Link { grpc: channel, .. }: Link, n| {
        let entries: Vec<&(CheckPermissionRequest, bool)> = (0..BATCH_ITEMS as u64)
            .map(|i| &checks[spread(n * BATCH_ITEMS as u64 + i, checks.len())])
            .collect();
        let expected: Vec<bool> = entries.iter().map(|e| e.1).collect();
        let request = CheckPermissionsRequest {
            items: entries.into_iter().map(|e| e.0.clone()).collect(),
        };
        Box::pin(async move {
            let results = PermissionServiceClient::new(channel)
                .check_permissions(request)
                .await
                .map_err(|status| status.to_string())?
                .into_inner()
                .results;
            let answers: Vec<Option<bool>> = results
                .iter()
                .map(|r| match &r.outcome {
                    Some(check_permissions_result::Outcome::Decision(d)) => Some(d.allowed),
                    _ => None,
                })
                .collect();
            let right = answers
                .iter()
                .zip(&expected)
                .filter(|(answer, expected)| **answer == Some(**expected))
                .count();
            if right == expected.len() && answers.len() == expected.len() {
                Ok(BATCH_ITEMS as u64)
            } else {
                Err(format!(
                    "{right} of {} batch checks answered as expected",
                    expected.len()
                ))
            }
        })
    })
}

/// The call of `scenario`, drawing on `sample`.
fn scenario_call(
    scenario: Scenario,
    sample: Arc<Sample>,
    run: u128,
    joins: Arc<AtomicU64>,
) -> Call {
    match scenario {
        Scenario::HttpFloor => Arc::new(move |link: Link, _| {
            Box::pin(async move {
                let http = link.http.ok_or("no --http listener")?;
                match http.call("GET", "/floor", String::new()).await? {
                    (404, _) => Ok(0),
                    (status, body) => Err(format!(
                        "the floor answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    )),
                }
            })
        }),
        Scenario::HttpCheck => Arc::new(move |link: Link, n| {
            let entry = sample.checks[spread(n, sample.checks.len())].clone();
            Box::pin(async move {
                let http = link.http.ok_or("no --http listener")?;
                let (status, body) = http
                    .call("POST", "/v1/checks:check", check_json(&entry))
                    .await?;
                let decision: serde_json::Value = serde_json::from_slice(&body)
                    .map_err(|e| format!("{status}: not JSON: {e}"))?;
                match decision.get("allowed") {
                    Some(serde_json::Value::Bool(allowed))
                        if status == 200 && *allowed == entry.3 =>
                    {
                        Ok(1)
                    }
                    _ => Err(format!(
                        "a check over HTTP answered {status} {decision}, expected allowed = {}",
                        entry.3
                    )),
                }
            })
        }),
        Scenario::Check => Arc::new(move |Link { grpc: channel, .. }: Link, n| {
            let entry = &sample.checks[spread(n, sample.checks.len())];
            Box::pin(checked(channel, check_request(entry), entry.3, "a check"))
        }),
        Scenario::CheckByApplication => Arc::new(move |Link { grpc: channel, .. }: Link, n| {
            let entry = &sample.applications[spread(n, sample.applications.len())];
            let expected = n % 2 == 0;
            let request = application_request(entry, expected);
            Box::pin(checked(
                channel,
                request,
                expected,
                "a check by application",
            ))
        }),
        Scenario::Batch => batch_call(account_checks(&sample.checks)),
        Scenario::DeniedBatch => batch_call(
            account_checks(&sample.checks)
                .into_iter()
                .filter(|c| !c.1)
                .collect(),
        ),
        Scenario::BatchByApplication => batch_call(application_checks(&sample.applications)),
        Scenario::MixedBatch => {
            let accounts = account_checks(&sample.checks);
            let applications = application_checks(&sample.applications);
            let mixed = (0..accounts.len().max(applications.len()))
                .flat_map(|i| {
                    [
                        accounts[i % accounts.len()].clone(),
                        applications[i % applications.len()].clone(),
                    ]
                })
                .collect();
            batch_call(mixed)
        }
        Scenario::ListAccessible => Arc::new(move |Link { grpc: channel, .. }: Link, n| {
            let (customer, _, permission, _) = &sample.checks[spread(n, sample.checks.len())];
            let request = ListAccessibleApplicationsRequest {
                customer_id: customer.clone(),
                permission: *permission as i32,
                page_size: 50,
                page_token: String::new(),
            };
            Box::pin(async move {
                PermissionServiceClient::new(channel)
                    .list_accessible_applications(request)
                    .await
                    .map(|_| 0)
                    .map_err(|status| status.to_string())
            })
        }),
        Scenario::SetPermissions => Arc::new(move |Link { grpc: channel, .. }: Link, n| {
            let (account, manager, associate) = &sample.managed[spread(n, sample.managed.len())];
            // Any set without Manage: the associate never becomes or stops being a Manager.
            let bits = 1 + spread(n ^ 0x5e7, 15);
            let permissions = [
                Permission::Apply,
                Permission::Pay,
                Permission::Inspections,
                Permission::UploadFiles,
            ]
            .into_iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, p)| p as i32)
            .collect();
            let request = acting(
                manager,
                SetPermissionsRequest {
                    contractor_id: account.clone(),
                    customer_id: associate.clone(),
                    permissions,
                    expire_time: None,
                },
            )
            .map_err(|e| e.to_string());
            Box::pin(async move {
                PermissionServiceClient::new(channel)
                    .set_permissions(request?)
                    .await
                    .map(|_| 0)
                    .map_err(|status| status.to_string())
            })
        }),
        Scenario::AssociateByPin => Arc::new(move |Link { grpc: channel, .. }: Link, n| {
            let (account, pin) = sample.pins[spread(n, sample.pins.len())].clone();
            let joiner = joins.fetch_add(1, Ordering::Relaxed);
            Box::pin(async move {
                let customer = IdentityServiceClient::new(channel.clone())
                    .register_customer(RegisterCustomerRequest {
                        external_subject: format!("bench|{run}|joiner-{joiner}"),
                        display_name: format!("Joiner {joiner}"),
                        email: format!("joiner-{joiner}@bench.example.ca"),
                    })
                    .await
                    .map_err(|status| status.to_string())?
                    .into_inner()
                    .customer
                    .ok_or("no customer in the response")?
                    .customer_id;
                let joined = ContractorServiceClient::new(channel)
                    .associate_by_pin(
                        acting(&customer, AssociateByPinRequest { pin })
                            .map_err(|e| e.to_string())?,
                    )
                    .await
                    .map_err(|status| status.to_string())?
                    .into_inner();
                match joined.contractor {
                    Some(c) if c.contractor_id == account => Ok(0),
                    other => Err(format!("a PIN of {account} associated with {other:?}")),
                }
            })
        }),
    }
}

/// How the scenarios are driven.
struct Load {
    pool: Vec<Link>,
    in_flight: usize,
    rate: Option<u32>,
    warmup: Duration,
    duration: Duration,
}

/// What a scenario measured.
struct Measured {
    /// Latencies in microseconds.
    histogram: Histogram<u64>,
    /// Calls measured (after the warm-up), failed ones included.
    calls: u64,
    errors: u64,
    decisions: u64,
    /// The first error, to show.
    first_error: Option<String>,
    elapsed: Duration,
}

impl Measured {
    fn rate(&self) -> f64 {
        (self.calls - self.errors) as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    fn decision_rate(&self) -> f64 {
        self.decisions as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// The latency at quantile `q`, in milliseconds.
    fn ms(&self, q: f64) -> f64 {
        self.histogram.value_at_quantile(q) as f64 / 1000.0
    }

    fn max_ms(&self) -> f64 {
        self.histogram.max() as f64 / 1000.0
    }
}

/// Where the calls of a scenario record what they did.
struct Recorder {
    histogram: Mutex<Histogram<u64>>,
    calls: AtomicU64,
    errors: AtomicU64,
    decisions: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Recorder {
    fn new() -> Result<Self, Failure> {
        Ok(Self {
            // 1 µs to 10 minutes, three significant digits.
            histogram: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3)?),
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            decisions: AtomicU64::new(0),
            first_error: Mutex::new(None),
        })
    }

    fn record(&self, latency: Duration, outcome: Outcome) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(decisions) => {
                self.decisions.fetch_add(decisions, Ordering::Relaxed);
            }
            Err(error) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert(error);
                }
            }
        }
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        if let Ok(mut histogram) = self.histogram.lock() {
            histogram.saturating_record(micros.max(1));
        }
    }

    fn measured(self, elapsed: Duration) -> Measured {
        let histogram = self
            .histogram
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Measured {
            histogram,
            calls: self.calls.into_inner(),
            errors: self.errors.into_inner(),
            decisions: self.decisions.into_inner(),
            first_error: self
                .first_error
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            elapsed,
        }
    }
}

impl Load {
    /// Runs `call` for the warm-up, then for the measured duration; a failed call is counted,
    /// not fatal.
    async fn run(&self, call: Call) -> Result<Measured, Failure> {
        let recorder = Arc::new(Recorder::new()?);
        let start = Instant::now();
        let warm = start + self.warmup;
        let end = warm + self.duration;
        let elapsed = match self.rate {
            None => {
                self.closed(&call, &recorder, warm, end).await;
                self.duration
            }
            Some(rate) => {
                self.open(&call, &recorder, rate, warm, end).await;
                // Every call sent is waited for: a server that fell behind answers the last
                // ones late, and its rate is what it answered in that longer time.
                warm.elapsed().max(self.duration)
            }
        };
        let recorder = Arc::into_inner(recorder).ok_or("a call outlived its scenario")?;
        Ok(recorder.measured(elapsed))
    }

    /// `in_flight` tasks, each calling again as soon as its call returns.
    async fn closed(&self, call: &Call, recorder: &Arc<Recorder>, warm: Instant, end: Instant) {
        let counter = Arc::new(AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..self.in_flight {
            let channel = self.pool[n % self.pool.len()].clone();
            let (call, recorder, counter) = (call.clone(), recorder.clone(), counter.clone());
            tasks.spawn(async move {
                loop {
                    let sent = Instant::now();
                    if sent >= end {
                        return;
                    }
                    let outcome =
                        call(channel.clone(), counter.fetch_add(1, Ordering::Relaxed)).await;
                    if sent >= warm {
                        recorder.record(sent.elapsed(), outcome);
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// One call every 1/`rate` seconds whatever the answers, each timed from when it was due.
    async fn open(
        &self,
        call: &Call,
        recorder: &Arc<Recorder>,
        rate: u32,
        warm: Instant,
        end: Instant,
    ) {
        let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
        let first = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let mut n: u64 = 0;
        loop {
            let due = first + interval.mul_f64(n as f64);
            if due >= end {
                break;
            }
            tokio::time::sleep_until(due.into()).await;
            let channel = self.pool[(n as usize) % self.pool.len()].clone();
            let (call, recorder) = (call.clone(), recorder.clone());
            tasks.spawn(async move {
                let outcome = call(channel, n).await;
                if due >= warm {
                    recorder.record(due.elapsed(), outcome);
                }
            });
            n += 1;
            // Reap finished calls as we go, so the set stays small.
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// Prints the scenarios as a table, each also as a ratio to the floor (the first row).
fn print_table(results: &[(&str, Measured)]) {
    let Some((_, floor)) = results.first() else {
        return;
    };
    println!(
        "{:<22} {:>9} {:>11} {:>8} {:>8} {:>8} {:>9} {:>8} {:>7} {:>8} {:>8} {:>7}",
        "scenario",
        "calls/s",
        "decisions/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "errors",
        "x rate",
        "x p50",
        "x p99"
    );
    for (name, m) in results {
        let ratio = |a: f64, b: f64| a / b.max(f64::EPSILON);
        println!(
            "{name:<22} {:>9.0} {:>11} {:>8.3} {:>8.3} {:>8.3} {:>9.3} {:>8.3} {:>7} {:>8.3} {:>8.2} {:>7.2}",
            m.rate(),
            if m.decisions > 0 {
                format!("{:.0}", m.decision_rate())
            } else {
                "-".to_owned()
            },
            m.ms(0.50),
            m.ms(0.90),
            m.ms(0.99),
            m.ms(0.999),
            m.max_ms(),
            m.errors,
            ratio(m.rate(), floor.rate()),
            ratio(m.ms(0.50), floor.ms(0.50)),
            ratio(m.ms(0.99), floor.ms(0.99)),
        );
    }
    for (name, m) in results {
        if let Some(error) = &m.first_error {
            println!("{name}: {} errors, the first: {error}", m.errors);
        }
    }
}

/// The results as JSON.
fn json(args: &Args, mode: &str, results: &[(&str, Measured)]) -> String {
    let text = |s: &str| {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    };
    let floor = results.first().map(|(_, m)| m);
    let scenarios: Vec<String> = results
        .iter()
        .map(|(name, m)| {
            let ratio = |a: f64, b: Option<f64>| b.map_or(0.0, |b| a / b.max(f64::EPSILON));
            format!(
                "    {{\"scenario\": {}, \"calls\": {}, \"errors\": {}, \"calls_per_sec\": {:.1}, \
                 \"decisions_per_sec\": {:.1}, \"p50_ms\": {:.3}, \"p90_ms\": {:.3}, \
                 \"p99_ms\": {:.3}, \"p999_ms\": {:.3}, \"max_ms\": {:.3}, \
                 \"rate_ratio\": {:.3}, \"p50_ratio\": {:.3}, \"p99_ratio\": {:.3}}}",
                text(name),
                m.calls,
                m.errors,
                m.rate(),
                m.decision_rate(),
                m.ms(0.50),
                m.ms(0.90),
                m.ms(0.99),
                m.ms(0.999),
                m.max_ms(),
                ratio(m.rate(), floor.map(Measured::rate)),
                ratio(m.ms(0.50), floor.map(|f| f.ms(0.50))),
                ratio(m.ms(0.99), floor.map(|f| f.ms(0.99))),
            )
        })
        .collect();
    format!(
        "{{\n  \"target\": {},\n  \"mode\": {},\n  \"connections\": {},\n  \"in_flight\": {},\n  \
         \"rate\": {},\n  \"warmup_secs\": {},\n  \"duration_secs\": {},\n  \"sample\": {},\n  \
         \"scenarios\": [\n{}\n  ]\n}}\n",
        text(&args.target),
        text(mode),
        args.connections.max(1),
        args.in_flight.max(1),
        args.rate.map_or("null".to_owned(), |r| r.to_string()),
        args.warmup_secs,
        args.duration_secs.max(1),
        args.sample
            .as_ref()
            .map_or("null".to_owned(), |p| text(&p.display().to_string())),
        scenarios.join(",\n")
    )
}

/// Times CheckPermission and SetPermissions one call after another, on an account of the
/// benchmark's own: returns the latencies of each.
async fn one_at_a_time(
    channel: &Authed,
    run: u128,
    warmup: usize,
    iterations: usize,
) -> Result<(Vec<Duration>, Vec<Duration>), Failure> {
    let own = Sample::register(channel, run ^ 0x1).await?;
    let mut permissions = PermissionServiceClient::new(channel.clone());
    let (account, manager, worker) = own.managed[0].clone();
    let set = |round: usize| SetPermissionsRequest {
        contractor_id: account.clone(),
        customer_id: worker.clone(),
        permissions: if round.is_multiple_of(2) {
            vec![Permission::Pay as i32]
        } else {
            vec![Permission::Pay as i32, Permission::Inspections as i32]
        },
        expire_time: None,
    };
    let set_latencies = time(warmup, iterations, async |round| {
        permissions
            .set_permissions(acting(&manager, set(round))?)
            .await?;
        Ok(())
    })
    .await?;
    let check = check_request(&own.checks[0]);
    let check_latencies = time(warmup, iterations, async |_| {
        let decision = permissions
            .check_permission(check.clone())
            .await?
            .into_inner();
        if !decision.allowed {
            return Err("the benchmark's check was denied".into());
        }
        Ok(())
    })
    .await?;
    Ok((check_latencies, set_latencies))
}

/// A registration of a benchmark account named `business_name`.
fn bench_account(business_name: String) -> RegisterContractorRequest {
    RegisterContractorRequest {
        business_name,
        contact: Some(Contact {
            name: "Bench Manager".into(),
            phone: "613-555-0100".into(),
            email: "manager@bench.example.ca".into(),
        }),
        mailing_address: Some(MailingAddress {
            street: "110 Laurier Ave W".into(),
            city: "Ottawa".into(),
            province: "ON".into(),
            postal_code: "K1P 1J1".into(),
            country: "CA".into(),
        }),
    }
}

/// How many merges `--merge-associates` times.
const MERGE_ROUNDS: usize = 3;

/// Builds two accounts with `associates` associates each, half of them on both and every
/// tenth holding Pay, then times merging one into the other.
async fn time_merge(
    channel: &InterceptedService<Channel, WithKey>,
    run: &str,
    associates: usize,
) -> Result<Duration, Failure> {
    let mut identity = IdentityServiceClient::new(channel.clone());
    let mut contractors = ContractorServiceClient::new(channel.clone());
    let mut permissions = PermissionServiceClient::new(channel.clone());
    let mut customers = Vec::new();
    for n in 0..associates * 3 / 2 + 1 {
        let customer = identity
            .register_customer(RegisterCustomerRequest {
                external_subject: format!("bench-merge|{run}|{n}"),
                display_name: format!("Merge {n}"),
                email: format!("merge-{n}@bench.example.ca"),
            })
            .await?
            .into_inner()
            .customer
            .ok_or("no customer in the response")?
            .customer_id;
        customers.push(customer);
    }
    let manager = customers[0].clone();
    let mut accounts = Vec::new();
    for (side, range) in [
        (0, 1..=associates),
        (1, associates / 2 + 1..=associates * 3 / 2),
    ] {
        let registered = contractors
            .register_contractor(acting(
                &manager,
                bench_account(format!("Merge Bench {run} {side}")),
            )?)
            .await?
            .into_inner();
        let contractor_id = registered
            .contractor
            .ok_or("no contractor in the response")?
            .contractor_id;
        for n in range {
            contractors
                .associate_by_pin(acting(
                    &customers[n],
                    AssociateByPinRequest {
                        pin: registered.pin.clone(),
                    },
                )?)
                .await?;
            if n % 10 == 0 {
                permissions
                    .set_permissions(acting(
                        &manager,
                        SetPermissionsRequest {
                            contractor_id: contractor_id.clone(),
                            customer_id: customers[n].clone(),
                            permissions: vec![Permission::Pay as i32],
                            expire_time: None,
                        },
                    )?)
                    .await?;
            }
        }
        accounts.push(contractor_id);
    }
    let started = Instant::now();
    contractors
        .merge_contractors(MergeContractorsRequest {
            survivor_contractor_id: accounts[0].clone(),
            absorbed_contractor_ids: vec![accounts[1].clone()],
        })
        .await?;
    Ok(started.elapsed())
}

/// Clients entering wrong PINs until stopped.
struct Guessing {
    stop: Arc<AtomicBool>,
    started: Instant,
    tasks: Vec<tokio::task::JoinHandle<Result<u64, String>>>,
}

impl Guessing {
    /// `fresh`: a new customer every so many guesses, registered with names unique to `run`.
    fn start(
        channel: &Authed,
        guesser: &str,
        clients: usize,
        rate: u32,
        fresh: Option<(u64, u128)>,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        // Each client's pace: `rate` shared among the clients.
        let pace = (rate > 0).then(|| Duration::from_secs_f64(clients as f64 / f64::from(rate)));
        let tasks = (0..clients)
            .map(|client| {
                let mut contractors = ContractorServiceClient::new(channel.clone());
                let mut identity = IdentityServiceClient::new(channel.clone());
                let mut guesser = guesser.to_owned();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut count = 0u64;
                    let mut ticks = pace.map(|pace| {
                        let mut ticks = tokio::time::interval(pace);
                        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        ticks
                    });
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(ticks) = &mut ticks {
                            ticks.tick().await;
                        }
                        if let Some((every, run)) = fresh
                            && count > 0
                            && count.is_multiple_of(every)
                        {
                            guesser = identity
                                .register_customer(RegisterCustomerRequest {
                                    external_subject: format!(
                                        "bench|{run}|guesser-{client}-{count}"
                                    ),
                                    display_name: "Bench guesser".into(),
                                    email: "guesser@bench.example.ca".into(),
                                })
                                .await
                                .map_err(|status| format!("a guesser's registration: {status}"))?
                                .into_inner()
                                .customer
                                .ok_or("no customer in the response")?
                                .customer_id;
                        }
                        // Well-formed PINs (their check character holds) that no account has.
                        let seed = (client as u64) << 40 | count;
                        let pin = Pin::from_random(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                        let request = acting(
                            &guesser,
                            AssociateByPinRequest {
                                pin: pin.expose_formatted(),
                            },
                        )
                        .map_err(|e| e.to_string())?;
                        match contractors.associate_by_pin(request).await {
                            // Looked at and wrong, or refused unread by the PIN lockout.
                            Err(status)
                                if matches!(
                                    status.code(),
                                    tonic::Code::NotFound | tonic::Code::ResourceExhausted
                                ) =>
                            {
                                count += 1
                            }
                            Ok(_) => return Err("a guessed PIN was accepted".to_owned()),
                            Err(status) => return Err(format!("a guess answered {status}")),
                        }
                    }
                    Ok(count)
                })
            })
            .collect();
        Self {
            stop,
            started: Instant::now(),
            tasks,
        }
    }

    /// Stops the guessing; how many guesses were made, in how long (`None` without guessers).
    async fn stop(self) -> Result<Option<(u64, Duration)>, Failure> {
        self.stop.store(true, Ordering::Relaxed);
        let elapsed = self.started.elapsed();
        if self.tasks.is_empty() {
            return Ok(None);
        }
        let mut total = 0;
        for task in self.tasks {
            total += task.await??;
        }
        Ok(Some((total, elapsed)))
    }
}

/// Presents the API key on every call.
#[derive(Clone)]
struct WithKey(MetadataValue<Ascii>);

impl Interceptor for WithKey {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

type Authed = InterceptedService<Channel, WithKey>;

/// `message` on behalf of `customer_id`.
fn acting<T>(customer_id: &str, message: T) -> Result<Request<T>, Failure> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(CUSTOMER_HEADER, customer_id.parse()?);
    Ok(request)
}

/// Runs `call` `warmup` times untimed, then `iterations` times timed.
async fn time(
    warmup: usize,
    iterations: usize,
    mut call: impl AsyncFnMut(usize) -> Result<(), Failure>,
) -> Result<Vec<Duration>, Failure> {
    for round in 0..warmup {
        call(round).await?;
    }
    let mut latencies = Vec::with_capacity(iterations);
    for round in 0..iterations {
        let start = Instant::now();
        call(round).await?;
        latencies.push(start.elapsed());
    }
    Ok(latencies)
}

fn report(rpc: &str, mut latencies: Vec<Duration>) {
    latencies.sort();
    let total: Duration = latencies.iter().sum();
    let at = |q: f64| {
        let index = ((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1);
        latencies.get(index).copied().unwrap_or_default()
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{rpc:<16} {:>10.3} {:>10.3} {:>10.3} {:>10.0}",
        ms(at(0.50)),
        ms(at(0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
        latencies.len() as f64 / total.as_secs_f64().max(f64::EPSILON)
    );
}
