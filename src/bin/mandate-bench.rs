//! `mandate-bench`: latency of Mandate's hot RPCs against a running server, from a simple loop.
//!
//! It registers its own customers and account (unique names, so any database will do), then
//! times `CheckPermission` and `SetPermissions` one call after another and prints the median,
//! 99th percentile and maximum of each. With `--guessers N`, N clients keep entering wrong PINs
//! meanwhile, as a PIN-guessing attack would, and their rate is printed too. With
//! `--connections N --in-flight C`, it also keeps C calls in flight over N connections for
//! `--duration-secs`, first for the Health check (the empty-RPC floor), then for
//! CheckPermission and for CheckPermissions of 100 checks, and prints each one's rate,
//! percentiles and ratio to the floor.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use mandate::CUSTOMER_HEADER;
use mandate::pb::contractor_service_client::ContractorServiceClient;
use mandate::pb::identity_service_client::IdentityServiceClient;
use mandate::pb::permission_service_client::PermissionServiceClient;
use mandate::pb::{
    AssociateByPinRequest, CheckPermissionRequest, CheckPermissionsRequest, Contact,
    MailingAddress, MergeContractorsRequest, Permission, RegisterContractorRequest,
    RegisterCustomerRequest, SetPermissionsRequest, check_permissions_result,
};
use mandate_domain::pin::Pin;
use tonic::Request;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Times CheckPermission and SetPermissions against a running Mandate server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The server to measure.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// An API key with the portal and check scopes (the bootstrap key will do).
    #[arg(long, env = "MANDATE_API_KEY", hide_env_values = true)]
    key: String,
    /// Timed calls per RPC.
    #[arg(long, default_value_t = 2000)]
    iterations: usize,
    /// Untimed calls per RPC before timing starts.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Concurrent clients entering wrong PINs (AssociateByPin) while the calls are timed.
    #[arg(long, default_value_t = 0)]
    guessers: usize,
    /// Wrong PINs a second across all guessers; 0 for as fast as they can.
    #[arg(long, default_value_t = 0)]
    guess_rate: u32,
    /// Also time MergeContractors (the key needs the staff scope) of two accounts with this
    /// many associates each, half of them on both; 0 to skip.
    #[arg(long, default_value_t = 0)]
    merge_associates: usize,
    /// Also run each scenario (the Health check as the empty-RPC floor, then CheckPermission)
    /// over this many connections, with `--in-flight` calls in flight in all; 0 to skip.
    #[arg(long, default_value_t = 0)]
    connections: usize,
    /// Calls in flight at once across the connections, for `--connections`.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Seconds each concurrent scenario is measured, after one second of warm-up.
    #[arg(long, default_value_t = 5)]
    duration_secs: u64,
}

type Failure = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let args = Args::parse();
    let channel = InterceptedService::new(
        Channel::from_shared(args.target.clone())?.connect().await?,
        WithKey(format!("Bearer {}", args.key.trim()).parse()?),
    );
    let mut identity = IdentityServiceClient::new(channel.clone());
    let mut contractors = ContractorServiceClient::new(channel.clone());
    let mut permissions = PermissionServiceClient::new(channel.clone());

    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let mut customer = async |name: &str| -> Result<String, Failure> {
        let response = identity
            .register_customer(RegisterCustomerRequest {
                external_subject: format!("bench|{run}|{name}"),
                display_name: format!("Bench {name}"),
                email: format!("{name}@bench.example.ca"),
            })
            .await?
            .into_inner();
        Ok(response
            .customer
            .ok_or("no customer in the response")?
            .customer_id)
    };
    let manager = customer("manager").await?;
    let associate = customer("associate").await?;
    let registered = contractors
        .register_contractor(acting(
            &manager,
            bench_account("Bench Builders Inc.".into()),
        )?)
        .await?
        .into_inner();
    let contractor_id = registered
        .contractor
        .ok_or("no contractor in the response")?
        .contractor_id;
    contractors
        .associate_by_pin(acting(
            &associate,
            AssociateByPinRequest {
                pin: registered.pin,
            },
        )?)
        .await?;

    let guesser = customer("guesser").await?;
    let guessing = Guessing::start(&channel, &guesser, args.guessers, args.guess_rate);

    let set = |round: usize| SetPermissionsRequest {
        contractor_id: contractor_id.clone(),
        customer_id: associate.clone(),
        permissions: if round.is_multiple_of(2) {
            vec![Permission::Pay as i32]
        } else {
            vec![Permission::Pay as i32, Permission::Inspections as i32]
        },
        expire_time: None,
    };
    let set_latencies = time(args.warmup, args.iterations, async |round| {
        permissions
            .set_permissions(acting(&manager, set(round))?)
            .await?;
        Ok(())
    })
    .await?;
    let check = CheckPermissionRequest {
        customer_id: associate.clone(),
        permission: Permission::Pay as i32,
        contractor_id: contractor_id.clone(),
        application_id: String::new(),
        at_least_revision: 0,
    };
    let check_latencies = time(args.warmup, args.iterations, async |_| {
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

    let mut loads = Vec::new();
    if args.connections > 0 {
        let mut pool = Vec::new();
        for _ in 0..args.connections {
            pool.push(InterceptedService::new(
                Channel::from_shared(args.target.clone())?.connect().await?,
                WithKey(format!("Bearer {}", args.key.trim()).parse()?),
            ));
        }
        let health: Call = Arc::new(|channel: Authed| {
            Box::pin(async move {
                tonic_health::pb::health_client::HealthClient::new(channel)
                    .check(tonic_health::pb::HealthCheckRequest::default())
                    .await
                    .map(|_| ())
                    .map_err(|status| status.to_string())
            })
        });
        let check_request = check.clone();
        let checking: Call = Arc::new(move |channel: Authed| {
            let request = check_request.clone();
            Box::pin(async move {
                let decision = PermissionServiceClient::new(channel)
                    .check_permission(request)
                    .await
                    .map_err(|status| status.to_string())?
                    .into_inner();
                if decision.allowed {
                    Ok(())
                } else {
                    Err("the benchmark's check was denied".to_owned())
                }
            })
        });
        let batch_request = CheckPermissionsRequest {
            items: vec![check.clone(); BATCH_ITEMS],
        };
        let batching: Call = Arc::new(move |channel: Authed| {
            let request = batch_request.clone();
            Box::pin(async move {
                let results = PermissionServiceClient::new(channel)
                    .check_permissions(request)
                    .await
                    .map_err(|status| status.to_string())?
                    .into_inner()
                    .results;
                let allowed = results
                    .iter()
                    .filter(|r| {
                        matches!(&r.outcome, Some(check_permissions_result::Outcome::Decision(d)) if d.allowed)
                    })
                    .count();
                if allowed == BATCH_ITEMS {
                    Ok(())
                } else {
                    Err(format!("{allowed} of {BATCH_ITEMS} batch checks allowed"))
                }
            })
        });
        let duration = Duration::from_secs(args.duration_secs);
        for (name, call) in [
            ("Health (empty)", health),
            ("CheckPermission", checking),
            ("CheckPermissions", batching),
        ] {
            loads.push((name, load(&pool, args.in_flight, duration, call).await?));
        }
    }
    let guesses = guessing.stop().await?;
    let mut merges = Vec::new();
    for round in 0..MERGE_ROUNDS.min(args.merge_associates) {
        merges.push(time_merge(&channel, &format!("{run}-{round}"), args.merge_associates).await?);
    }
    println!(
        "target {} — {} timed calls per RPC, one at a time",
        args.target, args.iterations
    );
    println!(
        "{:<16} {:>10} {:>10} {:>10} {:>10}",
        "rpc", "p50 ms", "p99 ms", "max ms", "calls/s"
    );
    report("CheckPermission", check_latencies);
    report("SetPermissions", set_latencies);
    if let Some((_, floor)) = loads.first() {
        let floor = floor.rate();
        println!(
            "\n{} connections, {} in flight, {} s each (after 1 s of warm-up), same client:",
            args.connections, args.in_flight, args.duration_secs
        );
        println!(
            "{:<16} {:>10} {:>9} {:>9} {:>9} {:>9} {:>8}",
            "scenario", "calls/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "ratio"
        );
        for (name, measured) in &loads {
            let ms = |q| measured.quantile(q).as_secs_f64() * 1000.0;
            println!(
                "{name:<16} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>8.2}",
                measured.rate(),
                ms(0.50),
                ms(0.90),
                ms(0.99),
                ms(0.999),
                measured.rate() / floor.max(f64::EPSILON)
            );
        }
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
    Ok(())
}

/// One call of a concurrent scenario on a connection; an error (or a wrong answer) ends the run.
type Call = Arc<
    dyn Fn(Authed) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

/// Checks in each `CheckPermissions` call of the concurrent scenarios.
const BATCH_ITEMS: usize = 100;

/// What a concurrent scenario measured.
struct Measured {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    fn quantile(&self, q: f64) -> Duration {
        let index = ((self.latencies.len() as f64 * q).ceil() as usize).saturating_sub(1);
        self.latencies.get(index).copied().unwrap_or_default()
    }
}

/// Keeps `in_flight` calls going over the connections of `pool` (spread evenly) for one second
/// of warm-up, then for `duration`, timed; every call must succeed.
async fn load(
    pool: &[Authed],
    in_flight: usize,
    duration: Duration,
    call: Call,
) -> Result<Measured, Failure> {
    let warm = Instant::now() + Duration::from_secs(1);
    let end = warm + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..in_flight.max(1) {
        let channel = pool[n % pool.len()].clone();
        let call = call.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let start = Instant::now();
                if start >= end {
                    return Ok::<_, String>(latencies);
                }
                call(channel.clone()).await?;
                if start >= warm {
                    latencies.push(start.elapsed());
                }
            }
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done??);
    }
    latencies.sort();
    Ok(Measured {
        latencies,
        elapsed: duration,
    })
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
    fn start(channel: &Authed, guesser: &str, clients: usize, rate: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        // Each client's pace: `rate` shared among the clients.
        let pace = (rate > 0).then(|| Duration::from_secs_f64(clients as f64 / f64::from(rate)));
        let tasks = (0..clients)
            .map(|client| {
                let mut contractors = ContractorServiceClient::new(channel.clone());
                let guesser = guesser.to_owned();
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
