//! `mandate seed`: writes a realistic, valid data set into an empty database quickly, for
//! benchmarks and trials, and (with `--sample`) a file of checks with their expected answers,
//! applications, PINs and Manager/associate pairs for `mandate-bench`.
//!
//! Every row is one the API could have written: customers and accounts validated by the domain
//! types, UUIDv7 ids, PINs drawn from the vault's random source and sealed with the configured
//! PIN secret, canonical application numbers. The run takes one revision and records one audit
//! event (`CHANGE_KIND_SEEDED`), as the legacy import does. `--seed` fixes the shape of the data
//! (names, who belongs to which account with which permissions, which applications go where);
//! ids, PINs and times differ from run to run, as they would through the API.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use mandate_domain::application::parse_application_id;
use mandate_domain::contractor::{ContractorDetails, RawAddress, RawContact, RawDetails};
use mandate_domain::customer::NewCustomer;
use mandate_domain::permission::{Permission, PermissionSet};
use mandate_domain::pin::Pin;
use mandate_store::{Actor, SeedCounts, SeedLink, SeedMembership, Seeding, Store};

use crate::credentials::vault::PinVault;
use crate::ops::sample::{self, Entry};

/// Rows generated and written at a time.
const CHUNK: usize = 20_000;
/// Accounts the sample draws on (half for checks and applications, half for SetPermissions).
const SAMPLE_ACCOUNTS: usize = 2_000;
/// Most entries of each kind in the sample.
const SAMPLE_CHECKS: usize = 2_000;
const SAMPLE_APPLICATIONS: usize = 2_000;
const SAMPLE_PINS: usize = 1_000;
const SAMPLE_MANAGED: usize = 2_000;
/// The first applications are each linked to this many of the sample's accounts, so that checks
/// by application meet applications linked widely (past what the check cache keeps of one).
const WIDE_APPLICATIONS: usize = 8;
const WIDE_LINKS: usize = 100;

/// What to write.
pub struct SeedOptions<'a> {
    pub customers: usize,
    pub contractors: usize,
    pub applications: usize,
    /// Fixes the shape of the data.
    pub seed: u64,
    /// Where to write the benchmark's sample (mode 600: it holds PINs); it must not exist.
    pub sample: Option<&'a Path>,
}

/// What a run wrote.
#[derive(Debug)]
pub struct SeedSummary {
    pub counts: SeedCounts,
    pub revision: i64,
    /// Entries written to the sample file, if one was asked for.
    pub sample_entries: Option<usize>,
}

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("{0}")]
    File(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] mandate_store::Error),
}

/// Writes the data set described by `options`, in one transaction. `progress` hears after each
/// chunk what part of which stage is done (`"customers"`, `"contractors"`, `"memberships"`,
/// `"applications"`, items done, items in all).
pub async fn seed(
    store: &Store,
    vault: &PinVault,
    options: &SeedOptions<'_>,
    progress: &mut dyn FnMut(&'static str, usize, usize),
) -> Result<SeedSummary, SeedError> {
    if options.customers == 0 || options.contractors == 0 {
        return Err(SeedError::Invalid(
            "--customers and --contractors must be at least 1: every account has a Manager".into(),
        ));
    }
    if let Some(path) = options.sample
        && path.exists()
    {
        return Err(SeedError::File(format!(
            "{} exists: the sample is written once and never overwritten (it holds PINs); name a \
             new file",
            path.display()
        )));
    }
    let mut rng = Rng::new(options.seed);
    let mut seeding = store.begin_seed().await?;
    let now = seeding.now();
    let mut sample = Sample::default();

    let customers = write_customers(&mut seeding, &mut rng, options.customers, progress).await?;
    let (accounts, members) = write_accounts(
        &mut seeding,
        &mut rng,
        vault,
        options.contractors,
        &customers,
        &mut sample,
        progress,
    )
    .await?;
    let written = Written {
        accounts: &accounts,
        customers: &customers,
        members: &members,
        now,
    };
    sample.pick_checks(&mut rng, &written);
    sample.pick_managed(&written);
    write_applications(
        &mut seeding,
        &mut rng,
        options.applications,
        &written,
        &mut sample,
        progress,
    )
    .await?;

    let sample_entries = match options.sample {
        Some(path) => Some(sample.write(path).map_err(SeedError::File)?),
        None => None,
    };
    let counts = seeding.counts();
    let detail = format!(
        "seeded {} customers, {} accounts, {} memberships, {} application links (seed {})",
        counts.customers, counts.contractors, counts.memberships, counts.links, options.seed
    );
    let actor = Actor {
        customer_id: None,
        client: "mandate-seed".to_owned(),
    };
    match seeding.finish(&actor, &detail).await {
        Ok(revision) => {
            // Planner statistics for the new rows: without them PostgreSQL guesses, and picks
            // whole-table scans for the checks' lookups until autovacuum gets round to it.
            store.analyze().await?;
            Ok(SeedSummary {
                counts,
                revision,
                sample_entries,
            })
        }
        Err(err) => {
            if let Some(path) = options.sample {
                let _ = fs::remove_file(path);
            }
            Err(err.into())
        }
    }
}

async fn write_customers(
    seeding: &mut Seeding,
    rng: &mut Rng,
    total: usize,
    progress: &mut dyn FnMut(&'static str, usize, usize),
) -> Result<Vec<String>, SeedError> {
    let mut ids = Vec::with_capacity(total);
    while ids.len() < total {
        let start = ids.len();
        let rows = (start..total.min(start + CHUNK))
            .map(|i| {
                let first = pick(rng, FIRST_NAMES);
                let last = pick(rng, LAST_NAMES);
                NewCustomer::parse(
                    // Shaped like an identity provider's subject; unique through `i`.
                    &format!("auth0|{i:08x}{:016x}", rng.next()),
                    &format!("{first} {last}"),
                    &format!(
                        "{}.{}{i}@{}",
                        first.to_ascii_lowercase(),
                        last.to_ascii_lowercase(),
                        pick(rng, MAIL_DOMAINS)
                    ),
                )
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| SeedError::Invalid(format!("a generated customer is invalid: {err}")))?;
        ids.extend(seeding.customers(&rows).await?);
        progress("customers", ids.len(), total);
    }
    Ok(ids)
}

/// A membership kept in memory for the sample: the customer's index, and the grant.
type Member = (usize, PermissionSet, Option<DateTime<Utc>>);

/// What the run wrote so far, as the sample and the applications need it.
struct Written<'a> {
    /// Account ids, by index.
    accounts: &'a [String],
    /// Customer ids, by index.
    customers: &'a [String],
    /// The members of the sample's accounts, by account index.
    members: &'a HashMap<usize, Vec<Member>>,
    now: DateTime<Utc>,
}

/// Writes the accounts and their memberships. Returns the account ids, and the members of the
/// sample's accounts by account index.
async fn write_accounts(
    seeding: &mut Seeding,
    rng: &mut Rng,
    vault: &PinVault,
    total: usize,
    customers: &[String],
    sample: &mut Sample,
    progress: &mut dyn FnMut(&'static str, usize, usize),
) -> Result<(Vec<String>, HashMap<usize, Vec<Member>>), SeedError> {
    let now = seeding.now();
    let stride = (total / SAMPLE_ACCOUNTS).max(1);
    let mut accounts = Vec::with_capacity(total);
    let mut members_of_sample = HashMap::new();
    while accounts.len() < total {
        let start = accounts.len();
        let end = total.min(start + CHUNK / 4);
        let details = (start..end)
            .map(|_| ContractorDetails::parse(&account_details(rng)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| SeedError::Invalid(format!("a generated account is invalid: {err}")))?;
        let made = seeding
            .contractors(&details, |id| vault.account_pin(id))
            .await?;
        let mut grants: Vec<(usize, Member, DateTime<Utc>)> = Vec::new();
        for (offset, (id, pin)) in made.into_iter().enumerate() {
            let index = start + offset;
            let members = account_members(rng, customers.len(), now);
            if index % stride == 0 {
                if sample.pins.len() < SAMPLE_PINS {
                    sample.pins.push((id.clone(), pin));
                }
                members_of_sample
                    .insert(index, members.iter().map(|(member, _)| *member).collect());
            }
            accounts.push(id);
            grants.extend(
                members
                    .into_iter()
                    .map(|(member, since)| (index, member, since)),
            );
        }
        let rows: Vec<SeedMembership<'_>> = grants
            .iter()
            .map(
                |(account, (customer, permissions, expire_time), since)| SeedMembership {
                    contractor_id: &accounts[*account],
                    customer_id: &customers[*customer],
                    permissions: *permissions,
                    expire_time: *expire_time,
                    associate_time: *since,
                },
            )
            .collect();
        seeding.memberships(&rows).await?;
        progress("contractors", accounts.len(), total);
    }
    Ok((accounts, members_of_sample))
}

/// The members of a new account: 1 to 3 Managers and 0 to 20 associates, all different, with
/// when each associated.
fn account_members(
    rng: &mut Rng,
    customers: usize,
    now: DateTime<Utc>,
) -> Vec<(Member, DateTime<Utc>)> {
    let managers = match rng.below(10) {
        0..7 => 1,
        7..9 => 2,
        _ => 3,
    };
    let wanted = (managers + rng.below(21)).min(customers);
    let mut chosen: Vec<usize> = Vec::with_capacity(wanted);
    while chosen.len() < wanted {
        let customer = rng.below(customers);
        if !chosen.contains(&customer) {
            chosen.push(customer);
        }
    }
    chosen
        .into_iter()
        .enumerate()
        .map(|(n, customer)| {
            if n < managers {
                return ((customer, PermissionSet::MANAGER, None), now);
            }
            // A fifth hold nothing yet, as every associate does until a Manager grants some.
            if rng.below(5) == 0 {
                return ((customer, PermissionSet::NONE, None), now);
            }
            let permissions = PermissionSet::from_bits(1 + rng.below(15) as u8);
            match rng.below(100) {
                // Time-limited, running out 30 days to a year from now.
                0..8 => {
                    let end = now + Duration::days(30 + rng.below(336) as i64);
                    ((customer, permissions, Some(end)), now)
                }
                // Ran out 1 to 180 days ago; granted 30 to 365 days before it ran out.
                8..12 => {
                    let end = now - Duration::days(1 + rng.below(180) as i64);
                    let since = end - Duration::days(30 + rng.below(336) as i64);
                    ((customer, permissions, Some(end)), since)
                }
                _ => ((customer, permissions, None), now),
            }
        })
        .collect()
}

async fn write_applications(
    seeding: &mut Seeding,
    rng: &mut Rng,
    total: usize,
    written: &Written<'_>,
    sample: &mut Sample,
    progress: &mut dyn FnMut(&'static str, usize, usize),
) -> Result<(), SeedError> {
    let accounts = written.accounts;
    let busy = (accounts.len() / 10).max(1);
    // The sample's accounts that serve checks, in order (the map's order is random): those the
    // widely linked applications go to.
    let mut serving: Vec<usize> = written
        .members
        .keys()
        .copied()
        .filter(|&account| serves_checks(account, accounts.len()))
        .collect();
    serving.sort_unstable();
    let mut done = 0;
    while done < total {
        let end = total.min(done + CHUNK);
        let mut ids = Vec::with_capacity(end - done);
        let mut targets = Vec::with_capacity(end - done);
        for i in done..end {
            let id = parse_application_id("application_id", &application_number(i))
                .map_err(|err| SeedError::Invalid(format!("a generated number: {err}")))?;
            let linked = if i < WIDE_APPLICATIONS && !serving.is_empty() {
                // The first few are linked to many of the sample's accounts.
                let mut linked: Vec<usize> = Vec::with_capacity(WIDE_LINKS);
                for _ in 0..WIDE_LINKS * 4 {
                    let account = serving[rng.below(serving.len())];
                    if !linked.contains(&account) {
                        linked.push(account);
                    }
                    if linked.len() == WIDE_LINKS {
                        break;
                    }
                }
                linked
            } else {
                // Half the applications go to the busiest tenth of the accounts.
                let first = if rng.below(2) == 0 {
                    rng.below(accounts.len())
                } else {
                    rng.below(busy)
                };
                // A few are linked to a second account.
                let second = (rng.below(50) == 0)
                    .then(|| rng.below(accounts.len()))
                    .filter(|&second| second != first);
                std::iter::once(first).chain(second).collect()
            };
            sample.offer_application(rng, &id, &linked, written);
            ids.push(id);
            targets.push(linked);
        }
        let links: Vec<SeedLink<'_>> = ids
            .iter()
            .zip(&targets)
            .flat_map(|(id, linked)| {
                linked.iter().map(move |&account| SeedLink {
                    application_id: id,
                    contractor_id: &accounts[account],
                })
            })
            .collect();
        seeding.links(&links).await?;
        done = end;
        progress("applications", done, total);
    }
    Ok(())
}

/// The `i`th application number, unique for the first 54 million: `24-123456 BLD`.
fn application_number(i: usize) -> String {
    const KINDS: [&str; 5] = ["BLD", "PLB", "HVA", "DEM", "SGN"];
    format!(
        "{:02}-{:06} {}",
        15 + (i / 5) % 12,
        100_000 + (i / 60) % 900_000,
        KINDS[i % 5]
    )
}

/// Raw registration details of a made-up company, as a portal would send them.
fn account_details(rng: &mut Rng) -> RawDetails {
    let owner = pick(rng, LAST_NAMES);
    let trade = pick(rng, TRADES);
    let first = pick(rng, FIRST_NAMES);
    let (city, province, area, letter) = CITIES[rng.below(CITIES.len())];
    let postal = |rng: &mut Rng| POSTAL_LETTERS[rng.below(POSTAL_LETTERS.len())] as char;
    let postal_code = format!(
        "{letter}{}{} {}{}{}",
        rng.below(10),
        postal(rng),
        rng.below(10),
        postal(rng),
        rng.below(10)
    );
    RawDetails {
        business_name: format!("{owner} {trade} {}", pick(rng, SUFFIXES)),
        contact: Some(RawContact {
            name: format!("{first} {owner}"),
            phone: format!("{area}-555-{:04}", rng.below(10_000)),
            email: format!(
                "{}@{}{}.ca",
                first.to_ascii_lowercase(),
                owner.to_ascii_lowercase(),
                trade.to_ascii_lowercase()
            ),
        }),
        mailing_address: Some(RawAddress {
            street: format!(
                "{} {} {}",
                1 + rng.below(9_999),
                pick(rng, STREETS),
                pick(rng, ["St", "Ave", "Rd", "Blvd", "Cres"].as_slice())
            ),
            city: city.to_owned(),
            province: province.to_owned(),
            postal_code,
            country: "CA".to_owned(),
        }),
    }
}

/// The benchmark's sample: what to ask, and what the answer must be.
#[derive(Default)]
struct Sample {
    /// (customer, account, permission, allowed).
    checks: Vec<(String, String, Permission, bool)>,
    /// (application, permission, a customer who may, one who may not).
    applications: Vec<(String, Permission, String, String)>,
    /// (account, its PIN).
    pins: Vec<(String, Pin)>,
    /// (account, a Manager, an associate who is not one): SetPermissions pairs.
    managed: Vec<(String, String, String)>,
}

/// Sample accounts at even positions serve checks and applications, those at odd positions
/// SetPermissions: the benchmark's changes never touch what its checks expect.
fn serves_checks(index: usize, accounts: usize) -> bool {
    (index / (accounts / SAMPLE_ACCOUNTS).max(1)).is_multiple_of(2)
}

impl Sample {
    /// About as many allowed checks as denied ones, on the checking half of the sample's
    /// accounts: members with permissions they hold, lack, or held until their grant ran out,
    /// and customers who are not members.
    fn pick_checks(&mut self, rng: &mut Rng, written: &Written<'_>) {
        let Written {
            accounts,
            customers,
            members,
            now,
        } = *written;
        let mut allowed = Vec::new();
        let mut denied = Vec::new();
        let mut indexes: Vec<&usize> = members.keys().collect();
        indexes.sort();
        for &index in indexes {
            if !serves_checks(index, accounts.len()) {
                continue;
            }
            let account = &accounts[index];
            let list = &members[&index];
            for &(customer, permissions, expire_time) in list {
                let effective = if expire_time.is_some_and(|end| end <= now) {
                    PermissionSet::NONE
                } else {
                    permissions
                };
                let permission = Permission::ALL[rng.below(Permission::ALL.len())];
                let entry = (
                    customers[customer].clone(),
                    account.clone(),
                    permission,
                    effective.allows(permission),
                );
                if entry.3 {
                    allowed.push(entry);
                } else {
                    denied.push(entry);
                }
            }
            if let Some(outsider) = outsider(rng, customers.len(), &[list]) {
                denied.push((
                    customers[outsider].clone(),
                    account.clone(),
                    Permission::ALL[rng.below(Permission::ALL.len())],
                    false,
                ));
            }
        }
        let each = allowed.len().min(denied.len()).min(SAMPLE_CHECKS / 2);
        self.checks.extend(allowed.into_iter().take(each));
        self.checks.extend(denied.into_iter().take(each));
    }

    /// Manager/associate pairs on the other half of the sample's accounts; never a Manager as
    /// the associate, so concurrent changes cannot meet the last-Manager rule.
    fn pick_managed(&mut self, written: &Written<'_>) {
        let Written {
            accounts,
            customers,
            members,
            ..
        } = *written;
        let mut indexes: Vec<&usize> = members.keys().collect();
        indexes.sort();
        for &index in indexes {
            if serves_checks(index, accounts.len()) {
                continue;
            }
            let list = &members[&index];
            let Some(&(manager, _, _)) = list.iter().find(|(_, p, _)| p.is_manager()) else {
                continue;
            };
            for &(associate, permissions, _) in list {
                if !permissions.is_manager() && self.managed.len() < SAMPLE_MANAGED {
                    self.managed.push((
                        accounts[index].clone(),
                        customers[manager].clone(),
                        customers[associate].clone(),
                    ));
                }
            }
        }
    }

    /// Takes application `id`, linked to the account `account` alone, when that account serves
    /// checks and one of its members may act on it.
    /// Offers application `id`, linked to `linked` (the first of them decides for the
    /// customer who may act on it), when every account it is linked to is one of the sample's
    /// (whose members are known, so that the customer who may not is a member of none).
    fn offer_application(
        &mut self,
        rng: &mut Rng,
        id: &str,
        linked: &[usize],
        written: &Written<'_>,
    ) {
        let Written {
            accounts,
            customers,
            members,
            now,
        } = *written;
        if self.applications.len() >= SAMPLE_APPLICATIONS {
            return;
        }
        if !linked
            .iter()
            .all(|&account| serves_checks(account, accounts.len()))
        {
            return;
        }
        let Some(lists) = linked
            .iter()
            .map(|account| members.get(account).map(Vec::as_slice))
            .collect::<Option<Vec<&[Member]>>>()
        else {
            return;
        };
        let Some(list) = lists.first().copied() else {
            return;
        };
        let able: Vec<&Member> = list
            .iter()
            .filter(|(_, p, end)| !p.is_empty() && end.is_none_or(|end| end > now))
            .collect();
        if able.is_empty() {
            return;
        }
        let (customer, permissions, _) = *able[rng.below(able.len())];
        let held: Vec<Permission> = permissions.iter().collect();
        let permission = held[rng.below(held.len())];
        if let Some(outsider) = outsider(rng, customers.len(), &lists) {
            self.applications.push((
                id.to_owned(),
                permission,
                customers[customer].clone(),
                customers[outsider].clone(),
            ));
        }
    }

    /// Writes the sample as CSV, readable by its owner only; returns the entries written.
    fn write(&self, path: &Path) -> Result<usize, String> {
        let failure =
            |err: &dyn std::fmt::Display| format!("cannot write {}: {err}", path.display());
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| failure(&e))?;
        let mut out = csv::Writer::from_writer(file);
        out.write_record(sample::COLUMNS).map_err(|e| failure(&e))?;
        let checks = self
            .checks
            .iter()
            .map(|(customer, account, permission, allowed)| Entry::Check {
                contractor_id: account.clone(),
                customer_id: customer.clone(),
                permission: *permission,
                allowed: *allowed,
            });
        let applications =
            self.applications
                .iter()
                .map(
                    |(application, permission, may, may_not)| Entry::Application {
                        application_id: application.clone(),
                        permission: *permission,
                        may: may.clone(),
                        may_not: may_not.clone(),
                    },
                );
        let pins = self.pins.iter().map(|(account, pin)| Entry::Pin {
            contractor_id: account.clone(),
            pin: pin.expose_formatted(),
        });
        let managed = self
            .managed
            .iter()
            .map(|(account, manager, associate)| Entry::Manage {
                contractor_id: account.clone(),
                manager: manager.clone(),
                associate: associate.clone(),
            });
        let mut entries = 0;
        for entry in checks.chain(applications).chain(pins).chain(managed) {
            out.write_record(crate::ops::spreadsheet::row(entry.row()))
                .map_err(|e| failure(&e))?;
            entries += 1;
        }
        let file = out.into_inner().map_err(|e| failure(&e))?;
        file.sync_all().map_err(|e| failure(&e))?;
        Ok(entries)
    }
}

/// A customer who is none of `members`; `None` when every customer is one.
fn outsider(rng: &mut Rng, customers: usize, lists: &[&[Member]]) -> Option<usize> {
    (0..32).map(|_| rng.below(customers)).find(|c| {
        lists
            .iter()
            .all(|members| members.iter().all(|(member, _, _)| member != c))
    })
}

fn pick<'a>(rng: &mut Rng, list: &[&'a str]) -> &'a str {
    list[rng.below(list.len())]
}

/// SplitMix64: small, fast, and good enough to shape test data. Never used for secrets: PINs
/// and their nonces come from the vault's random source.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}

const FIRST_NAMES: &[&str] = &[
    "Marie", "Jean", "Luc", "Sophie", "Ahmed", "Priya", "Wei", "Olivia", "Liam", "Noah", "Emma",
    "Chloe", "Mohammed", "Fatima", "Raj", "Mei", "Lucas", "Amelia", "Ethan", "Isabelle", "Gabriel",
    "Nathalie", "Daniel", "Sarah", "Omar", "Aisha", "Hiroshi", "Elena", "Pierre", "Anna",
];
const LAST_NAMES: &[&str] = &[
    "Tremblay",
    "Gagnon",
    "Roy",
    "Cote",
    "Bouchard",
    "Gauthier",
    "Morin",
    "Lavoie",
    "Fortin",
    "Smith",
    "Brown",
    "Wilson",
    "Taylor",
    "Campbell",
    "Anderson",
    "Singh",
    "Nguyen",
    "Li",
    "Martin",
    "Lee",
    "Patel",
    "Murphy",
    "MacDonald",
    "Chen",
    "Kowalski",
    "Dubois",
    "Haddad",
    "Okafor",
    "Rossi",
    "Schmidt",
];
const MAIL_DOMAINS: &[&str] = &[
    "example.ca",
    "example.com",
    "mail.example.org",
    "example.net",
];
const TRADES: &[&str] = &[
    "Plumbing",
    "Electric",
    "Builders",
    "Roofing",
    "Renovations",
    "Mechanical",
    "Construction",
    "Design",
    "Landscaping",
    "Masonry",
    "Architects",
    "Engineering",
];
const SUFFIXES: &[&str] = &["Inc.", "Ltd.", "Corp.", "& Sons", "Co.", "Group"];
const STREETS: &[&str] = &[
    "Laurier",
    "Bank",
    "Elgin",
    "Rideau",
    "Wellington",
    "Somerset",
    "Bronson",
    "Carling",
    "Merivale",
    "Baseline",
    "Hunt Club",
    "Innes",
    "Montreal",
    "St. Laurent",
    "Richmond",
];
/// (city, province, phone area code, postal code's first letter).
const CITIES: &[(&str, &str, &str, char)] = &[
    ("Ottawa", "ON", "613", 'K'),
    ("Toronto", "ON", "416", 'M'),
    ("Gatineau", "QC", "819", 'J'),
    ("Montreal", "QC", "514", 'H'),
    ("Vancouver", "BC", "604", 'V'),
    ("Calgary", "AB", "403", 'T'),
    ("Halifax", "NS", "902", 'B'),
    ("Winnipeg", "MB", "204", 'R'),
];
/// Canada Post's letters: no D, F, I, O, Q or U.
const POSTAL_LETTERS: &[u8] = b"ABCEGHJKLMNPRSTVWXYZ";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_numbers_are_canonical_and_distinct() {
        let numbers: std::collections::HashSet<String> =
            (0..200_000).map(application_number).collect();
        assert_eq!(numbers.len(), 200_000);
        for n in numbers.iter().take(50) {
            assert_eq!(&parse_application_id("a", n).unwrap(), n);
        }
    }

    #[test]
    fn generated_accounts_pass_registration_validation() {
        let mut rng = Rng::new(7);
        for _ in 0..2_000 {
            let raw = account_details(&mut rng);
            ContractorDetails::parse(&raw).unwrap();
        }
    }

    #[test]
    fn an_account_has_one_to_three_managers_and_never_a_time_limited_manager() {
        let mut rng = Rng::new(11);
        let now = Utc::now();
        for _ in 0..2_000 {
            let members = account_members(&mut rng, 1_000, now);
            let managers = members
                .iter()
                .filter(|((_, p, _), _)| p.is_manager())
                .count();
            assert!((1..=3).contains(&managers), "{managers}");
            assert!(members.len() <= 23);
            assert!(
                members
                    .iter()
                    .all(|((_, p, end), _)| !(p.is_manager() && end.is_some()))
            );
        }
    }

    #[test]
    fn the_same_seed_shapes_the_same_data() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        assert_eq!(account_details(&mut a), account_details(&mut b));
    }
}
