//! Cross-module tests: the role × topic × operation matrix from one table, and `--acl` rules.

use super::*;

const OWN: &str = "bus-1";

/// A driver of `bus-1`, a rider of `bus-2`, an integrator, an operator, an anonymous client of a
/// broker without authentication, and an anonymous client of a broker with authentication.
fn clients() -> [(&'static str, Identity); 6] {
    let mut driver = Identity::with_role("d1", Some("driver-1"), Role::Driver);
    driver.vehicle = Some(OWN.into());
    let mut rider = Identity::with_role("r1", Some("rider-1"), Role::Rider);
    rider.vehicles = vec!["bus-2".into()];
    rider.routes = vec!["R1".into()];
    [
        ("driver", driver),
        ("rider", rider),
        (
            "integrator",
            Identity::with_role("i1", Some("int-1"), Role::Integrator),
        ),
        (
            "operator",
            Identity::with_role("o1", Some("op-1"), Role::Operator),
        ),
        ("open", Identity::open("x1", None)),
        ("anonymous", Identity::anonymous("a1")),
    ]
}

/// One row: a topic (or filter) and, per client of [`clients`] in order, what it may do with it:
/// `P` publish, `S` subscribe, `-` neither. A filter is granted when the client may read at
/// least one topic it matches (docs/security.md; what it may not read is filtered per message, see
/// `reads_are_checked_per_topic`): a rider's `#` is granted and delivers its own vehicle only.
const MATRIX: &[(&str, [&str; 6])] = &[
    //                               driver rider integr operator open anonymous
    ("fleet/bus-1/location", ["P", "-", "-", "PS", "PS", "-"]),
    ("fleet/bus-1/status", ["P", "-", "-", "PS", "PS", "-"]),
    ("fleet/bus-1/sos", ["P", "-", "-", "PS", "PS", "-"]),
    ("fleet/bus-1/ping", ["S", "-", "-", "PS", "PS", "-"]),
    ("fleet/bus-1/other", ["-", "-", "-", "PS", "PS", "-"]),
    ("fleet/bus-9/location", ["-", "-", "-", "PS", "PS", "-"]),
    ("fleet/bus-9/sos", ["-", "-", "-", "PS", "PS", "-"]),
    ("fleet/bus-9/ping", ["-", "-", "-", "PS", "PS", "-"]),
    ("fleet/+/location", ["-", "-", "-", "S", "S", "-"]),
    ("fleet/bus-1/#", ["S", "-", "-", "S", "S", "-"]),
    ("vehicles/bus-2", ["-", "S", "S", "PS", "PS", "-"]),
    ("vehicles/bus-9", ["-", "-", "S", "PS", "PS", "-"]),
    ("vehicles/bus-1", ["-", "-", "S", "PS", "PS", "-"]),
    ("events/bus-2/deviation", ["-", "S", "S", "PS", "PS", "-"]),
    ("events/bus-2/#", ["-", "S", "S", "S", "S", "-"]),
    ("events/bus-9/sos", ["-", "-", "S", "PS", "PS", "-"]),
    ("vehicles/+", ["-", "S", "S", "S", "S", "-"]),
    ("vehicles/#", ["-", "S", "S", "S", "S", "-"]),
    ("events/#", ["-", "S", "S", "S", "S", "-"]),
    ("events/+/sos", ["-", "S", "S", "S", "S", "-"]),
    ("$share/g/vehicles/#", ["-", "S", "S", "S", "S", "-"]),
    ("$share/g/vehicles/bus-2", ["-", "S", "S", "S", "S", "-"]),
    ("+/bus-2", ["-", "S", "S", "S", "S", "-"]),
    ("+/bus-9", ["-", "-", "S", "S", "S", "-"]),
    ("#", ["S", "S", "S", "S", "S", "-"]),
    ("$internal/x", ["-", "-", "-", "PS", "PS", "-"]),
    ("$share/g/x", ["-", "-", "-", "S", "S", "-"]),
    ("$SYS/#", ["-", "-", "-", "S", "S", "-"]),
    ("$SYS/broker/uptime", ["-", "-", "-", "S", "S", "-"]),
    ("vehicles/#/x", ["-", "-", "-", "-", "-", "-"]),
];

#[test]
fn role_matrix_from_one_table() {
    let acl = Acl::empty();
    let clients = clients();
    let mut checked = 0;
    for (topic, expected) in MATRIX {
        for ((name, id), want) in clients.iter().zip(expected) {
            let got = format!(
                "{}{}",
                if acl.can_publish(id, topic) { "P" } else { "" },
                if acl.can_subscribe(id, topic) {
                    "S"
                } else {
                    ""
                },
            );
            let got = if got.is_empty() { "-".to_owned() } else { got };
            assert_eq!(&got, want, "{name} on {topic}");
            checked += 2;
        }
    }
    assert_eq!(checked, MATRIX.len() * 6 * 2);
}

/// What each client of [`clients`] may read, per topic, as the router checks it per message:
/// `R` readable, `-` not.
const READS: &[(&str, [&str; 6])] = &[
    //                               driver rider integr operator open anonymous
    ("fleet/bus-1/ping", ["R", "-", "-", "R", "R", "-"]),
    ("fleet/bus-1/location", ["-", "-", "-", "R", "R", "-"]),
    ("vehicles/bus-2", ["-", "R", "R", "R", "R", "-"]),
    ("vehicles/bus-9", ["-", "-", "R", "R", "R", "-"]),
    ("events/bus-2/sos", ["-", "R", "R", "R", "R", "-"]),
    ("events/bus-9/sos", ["-", "-", "R", "R", "R", "-"]),
    ("$SYS/broker/uptime", ["-", "-", "-", "R", "R", "-"]),
    ("$internal/x", ["-", "-", "-", "R", "R", "-"]),
];

#[test]
fn reads_are_checked_per_topic() {
    let acl = Acl::empty();
    for (topic, expected) in READS {
        for ((name, id), want) in clients().iter().zip(expected) {
            let got = acl.reader(id).is_none_or(|r| r.may_read(topic));
            assert_eq!(got, *want == "R", "{name} reading {topic}");
        }
    }
}

#[test]
fn driver_without_usable_own_id_gets_nothing() {
    for vehicle in [None, Some(""), Some("+"), Some("#"), Some("a/b")] {
        let mut id = Identity::with_role("d", None, Role::Driver);
        id.vehicle = vehicle.map(str::to_owned);
        let acl = Acl::empty();
        for topic in [
            "fleet/+/location",
            "fleet/a/b/location",
            "fleet//location",
            "fleet/#",
        ] {
            assert!(!acl.can_publish(&id, topic), "{vehicle:?} {topic}");
            assert!(!acl.can_subscribe(&id, topic), "{vehicle:?} {topic}");
        }
    }
}

#[test]
fn rider_wildcard_vehicle_ids_are_ignored() {
    let mut id = Identity::with_role("r", None, Role::Rider);
    id.vehicles = vec!["+".into(), "#".into(), "a/b".into()];
    let acl = Acl::empty();
    for filter in [
        "vehicles/+",
        "vehicles/#",
        "events/+/#",
        "vehicles/a/b",
        "vehicles/x",
    ] {
        assert!(!acl.can_subscribe(&id, filter), "{filter}");
    }
}

fn driver(client: &str, user: Option<&str>, vehicle: &str) -> Identity {
    let mut id = Identity::with_role(client, user, Role::Driver);
    id.vehicle = Some(vehicle.into());
    id
}

const RULES: &str = r#"
# for everyone: a private area per client id and per user name
[[rule]]
topic = "clients/%c/#"
access = "readwrite"

[[rule]]
topic = "users/%u/inbox"
access = "read"

# by client: the dispatcher may ping every vehicle
[[rule]]
client = "dispatch"
topic = "fleet/+/ping"
access = "write"

# by role: integrators also read SOS
[[rule]]
role = "integrator"
topic = "fleet/+/sos"
access = "read"

# by user: alice may not publish to her own status
[[rule]]
user = "alice"
topic = "fleet/%c/status"
access = "deny"

# a deny wins: nobody touches lab/secret, and operators stay out of bus-7
[[rule]]
topic = "lab/#"
access = "readwrite"

[[rule]]
topic = "lab/secret"
access = "deny"

[[rule]]
role = "operator"
topic = "fleet/bus-7/#"
access = "deny"
"#;

#[test]
fn rules_for_everyone_with_client_and_user_substitution() {
    let acl = Acl::parse(RULES).unwrap();
    let d = driver("dev-1", Some("bob"), "bus-1");
    assert!(acl.can_publish(&d, "clients/dev-1/hello"));
    assert!(acl.can_subscribe(&d, "clients/dev-1/#"));
    assert!(!acl.can_publish(&d, "clients/dev-2/hello"));
    // Granted for the one readable branch; the others are filtered per message.
    assert!(acl.can_subscribe(&d, "clients/+/#"));
    let reads = acl.reader(&d).expect("restricted");
    assert!(reads.may_read("clients/dev-1/x"));
    assert!(!reads.may_read("clients/dev-2/x"));
    assert!(!acl.can_subscribe(&d, "clients/dev-2/#"));
    assert!(acl.can_subscribe(&d, "users/bob/inbox"));
    assert!(!acl.can_publish(&d, "users/bob/inbox"));
    assert!(!acl.can_subscribe(&d, "users/alice/inbox"));
    // The role table still applies under the rules.
    assert!(acl.can_publish(&d, "fleet/bus-1/location"));
    assert!(!acl.can_publish(&d, "fleet/bus-2/location"));
    // A client without a user name gets nothing from a `%u` rule.
    let no_user = driver("dev-3", None, "bus-3");
    assert!(!acl.can_subscribe(&no_user, "users/%u/inbox"));
    assert!(!acl.can_subscribe(&no_user, "users/+/inbox"));
}

#[test]
fn rules_by_client_role_and_user() {
    let acl = Acl::parse(RULES).unwrap();
    let dispatch = Identity::with_role("dispatch", Some("d"), Role::Integrator);
    let other = Identity::with_role("other", Some("o"), Role::Integrator);
    assert!(acl.can_publish(&dispatch, "fleet/bus-4/ping"));
    assert!(!acl.can_publish(&other, "fleet/bus-4/ping"));
    assert!(!acl.can_publish(&dispatch, "fleet/bus-4/location"));
    // role rule: integrators read SOS, riders do not.
    assert!(acl.can_subscribe(&other, "fleet/+/sos"));
    assert!(acl.can_subscribe(&other, "fleet/#"));
    assert!(!acl.can_subscribe(&other, "fleet/+/location"));
    let rider = Identity::with_role("r", Some("r"), Role::Rider);
    assert!(!acl.can_subscribe(&rider, "fleet/+/sos"));
    // user rule with %c: alice (client dev-a, driving dev-a) loses her status topic only.
    let alice = driver("dev-a", Some("alice"), "dev-a");
    assert!(!acl.can_publish(&alice, "fleet/dev-a/status"));
    assert!(acl.can_publish(&alice, "fleet/dev-a/location"));
    let carol = driver("dev-c", Some("carol"), "dev-c");
    assert!(acl.can_publish(&carol, "fleet/dev-c/status"));
}

#[test]
fn deny_wins_over_grants_and_roles() {
    let acl = Acl::parse(RULES).unwrap();
    let op = Identity::with_role("o", Some("op"), Role::Operator);
    let rider = Identity::with_role("r", Some("r"), Role::Rider);
    for id in [&op, &rider] {
        assert!(acl.can_publish(id, "lab/a"));
        assert!(acl.can_subscribe(id, "lab/a/#"));
        assert!(!acl.can_publish(id, "lab/secret"));
        assert!(!acl.can_subscribe(id, "lab/secret"));
        // A subscription that could also receive the denied topic is granted; the denied
        // topic is filtered out per message.
        assert!(acl.can_subscribe(id, "lab/#"));
        assert!(acl.can_subscribe(id, "lab/+"));
        let reads = acl.reader(id).expect("restricted");
        assert!(reads.may_read("lab/a"));
        assert!(!reads.may_read("lab/secret"));
    }
    assert!(!acl.can_publish(&op, "fleet/bus-7/location"));
    assert!(!acl.can_subscribe(&op, "fleet/bus-7/sos"));
    assert!(!acl.can_subscribe(&op, "fleet/bus-7/#"));
    assert!(acl.can_subscribe(&op, "fleet/#"));
    assert!(acl.can_subscribe(&op, "#"));
    assert!(acl.can_subscribe(&op, "$share/g/fleet/+/location"));
    let reads = acl.reader(&op).expect("restricted");
    assert!(!reads.may_read("fleet/bus-7/sos"));
    assert!(reads.may_read("fleet/bus-8/sos"));
    assert!(reads.may_read("$SYS/broker/uptime"));
    assert!(acl.can_subscribe(&op, "fleet/bus-8/#"));
    assert!(acl.can_subscribe(&op, "vehicles/#"));
    assert!(acl.can_subscribe(&op, "$SYS/#"));
}

#[test]
fn odd_ids_fail_closed() {
    let acl = Acl::parse(RULES).unwrap();
    // A grant with `%c` grants nothing to a client id that is not one plain level.
    for client in ["a+b", "a/b", "#", ""] {
        let id = Identity::with_role(client, None, Role::Rider);
        assert!(!acl.can_subscribe(&id, "clients/+/#"), "{client}");
        assert!(!acl.can_subscribe(&id, "clients/#"), "{client}");
    }
    // A deny with `%c` denies everything to such a client.
    let mut alice = driver("x/y", Some("alice"), "bus-1");
    assert!(!acl.can_publish(&alice, "fleet/bus-1/location"));
    alice.client_id = "xy".into();
    assert!(acl.can_publish(&alice, "fleet/bus-1/location"));
    // An HTTP identity (empty client id) is outside `%c` rules, grants and denies alike.
    alice.client_id = "".into();
    assert!(acl.can_publish(&alice, "fleet/bus-1/status"));
    assert!(!acl.can_subscribe(&alice, "clients/#"));
}

#[test]
fn open_broker_acl_is_allow_list_with_grants_and_block_list_without() {
    let open = Identity::open("dev-1", Some("u"));
    let empty = Acl::empty();
    assert!(empty.can_publish(&open, "anything/at/all"));
    let block = Acl::parse("[[rule]]\ntopic = \"secret/#\"\naccess = \"deny\"\n").unwrap();
    assert!(block.can_publish(&open, "fleet/x/location"));
    assert!(!block.can_publish(&open, "secret/a"));
    // `#` is granted and the denied topic filtered per message; only a filter within the
    // denied topics is refused (the issue's `mosquitto_sub -t '#'` case).
    assert!(block.can_subscribe(&open, "#"));
    assert!(!block.can_subscribe(&open, "secret/#"));
    assert!(!block.can_subscribe(&open, "secret/+/x"));
    assert!(block.can_subscribe(&open, "fleet/#"));
    let reads = block.reader(&open).expect("restricted");
    assert!(!reads.may_read("secret/a"));
    assert!(reads.may_read("fleet/a"));
    assert!(
        empty.reader(&open).is_none(),
        "nothing to check without rules"
    );
    let allow = Acl::parse("[[rule]]\ntopic = \"fleet/%c/#\"\naccess = \"write\"\n").unwrap();
    assert!(allow.can_publish(&open, "fleet/dev-1/location"));
    assert!(!allow.can_publish(&open, "fleet/dev-2/location"));
    assert!(!allow.can_subscribe(&open, "fleet/dev-1/ping"));
    // An anonymous client of a broker with authentication gets only what rules grant.
    let anon = Identity::anonymous("dev-1");
    assert!(!empty.can_publish(&anon, "anything"));
    assert!(allow.can_publish(&anon, "fleet/dev-1/location"));
}

#[test]
fn malformed_acl_names_the_problem() {
    let cases = [
        ("[[rule]]\ntopic = \"a\"\nacess = \"read\"\n", "acess"),
        (
            "[[rule]]\ntopic = \"a\"\naccess = \"readonly\"\n",
            "readonly",
        ),
        (
            "[[rule]]\nrole = \"admin\"\ntopic = \"a\"\naccess = \"read\"\n",
            "admin",
        ),
        (
            "[[rule]]\nuser = \"u\"\nclient = \"c\"\ntopic = \"a\"\naccess = \"read\"\n",
            "at most one",
        ),
        ("[[rule]]\ntopic = \"a/#/b\"\naccess = \"read\"\n", "a/#/b"),
        ("[[rule]]\naccess = \"read\"\n", "topic"),
        ("[[rule]\n", "line 1"),
        ("[rules]\n", "rules"),
    ];
    for (text, needle) in cases {
        let err = Acl::parse(text).unwrap_err().to_string();
        assert!(err.contains(needle), "{text:?}: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
    let err = Acl::parse("\n\n[[rule]]\ntopic = 1\naccess = \"read\"\n").unwrap_err();
    assert!(err.to_string().starts_with("line 4"), "{err}");
}

#[test]
fn acl_load_names_the_file() {
    let dir = std::env::temp_dir();
    let good = dir.join(format!("fleetmq-auth-acl-{}.toml", std::process::id()));
    std::fs::write(&good, RULES).unwrap();
    assert_eq!(Acl::load(&good).unwrap(), Acl::parse(RULES).unwrap());
    std::fs::write(&good, "[[rule]]\ntopic = \"a\"\n").unwrap();
    let err = Acl::load(&good).unwrap_err().to_string();
    std::fs::remove_file(&good).unwrap();
    assert!(err.starts_with(&good.display().to_string()), "{err}");
    assert!(err.contains("access"), "{err}");
    let missing = dir.join("fleetmq-auth-no-such-file.toml");
    let err = Acl::load(&missing).unwrap_err().to_string();
    assert!(err.contains("fleetmq-auth-no-such-file.toml"), "{err}");
}

#[test]
fn rider_trip_scope_follows_the_vehicles_current_trip() {
    use crate::trips::TripBook;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    let book = Arc::new(TripBook::new(Duration::from_secs(60)));
    let acl = Acl::parse("[[rule]]\ntopic = \"events/+/secret\"\naccess = \"deny\"\n")
        .expect("acl")
        .with_trips(book.clone());
    let mut rider = Identity::with_role("r", Some("r"), Role::Rider);
    rider.trips = vec!["T1".into()];
    // Granted before the trip runs: some vehicle may come to run it.
    assert!(acl.can_subscribe(&rider, "vehicles/+"));
    assert!(acl.can_subscribe(&rider, "events/bus-1/#"));
    assert!(!acl.can_subscribe(&rider, "fleet/#"));
    let rights = acl.reader(&rider).expect("restricted");
    assert!(!rights.may_read("vehicles/bus-1"), "not running yet");
    book.observe("bus-1", None, Some("T1"), Instant::now());
    assert!(rights.may_read("vehicles/bus-1") && rights.may_read("events/bus-1/stop_arrival"));
    assert!(!rights.may_read("events/bus-1/secret"), "a deny still wins");
    assert!(!rights.may_read("vehicles/bus-2") && !rights.may_read("fleet/bus-1/location"));
    book.observe("bus-1", None, Some("T2"), Instant::now());
    assert!(!rights.may_read("vehicles/bus-1"), "the trip ended");
    // A reader never caches a scoped decision.
    let mut reader = crate::router::reader::Reader::new(rights);
    assert!(!reader.may_read(&"vehicles/bus-1".into()));
    book.observe("bus-1", None, Some("T1"), Instant::now());
    assert!(reader.may_read(&"vehicles/bus-1".into()));
}
