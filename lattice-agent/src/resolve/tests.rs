use std::{net::Ipv4Addr, path::Path};

use super::*;
use crate::{
    config::{self, Config},
    state::StateDir,
};

const CONTRACT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/config-contract.yaml"
);

fn contract() -> Config {
    config::load_file(Path::new(CONTRACT)).unwrap_or_else(|e| panic!("{e}"))
}

/// A document with the given services (no listeners) in account 111111111111.
fn with_services(names: &[&str]) -> Config {
    let mut text = String::from("accounts: [{ id: \"111111111111\" }]\nservices:\n");
    for name in names {
        text.push_str(&format!(
            "  - {{ name: {name}, account: \"111111111111\" }}\n"
        ));
    }
    if names.is_empty() {
        text.push_str("  []\n");
    }
    config::parse_str(&text, Path::new("t.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

fn vip_of(resolved: &Resolved, service: &str) -> Ipv4Addr {
    resolved
        .services
        .iter()
        .find(|s| s.name == service)
        .unwrap_or_else(|| panic!("no service {service}"))
        .vip
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(169, 254, 171, last)
}

#[test]
fn ids_are_stable_and_shaped_like_lattice() {
    let config = contract();
    let settings = Settings::default();
    let a = resolve(&config, &settings, &mut VipAllocations::default()).unwrap();
    let b = resolve(&config, &settings, &mut VipAllocations::default()).unwrap();
    assert_eq!(
        a, b,
        "resolving twice gives the same ids, names and addresses"
    );

    let orders = &a.services[0];
    assert_eq!(orders.name, "orders");
    assert!(ids::has_id_shape(&orders.id, "svc-"), "{}", orders.id);
    assert_eq!(orders.id.len(), 21);
    assert_eq!(
        orders.arn,
        format!(
            "arn:lattice:vpc-lattice:local:222222222222:service/{}",
            orders.id
        )
    );
    let listener = &orders.listeners[0];
    assert!(
        ids::has_id_shape(&listener.id, "listener-"),
        "{}",
        listener.id
    );
    assert_eq!(
        listener.arn,
        format!("{}/listener/{}", orders.arn, listener.id)
    );
    assert_eq!(listener.default_action, "fixed-response 404");
    let rule = &listener.rules[0];
    assert!(ids::has_id_shape(&rule.id, "rule-"), "{}", rule.id);
    assert_eq!(rule.arn, format!("{}/rule/{}", listener.arn, rule.id));
    assert_eq!((rule.name.as_str(), rule.priority), ("v2-canary", 10));
    assert_eq!(rule.action, "forward orders-v2:90,orders-v1:10");

    let shop = &a.service_networks[0];
    assert!(ids::has_id_shape(&shop.id, "sn-"), "{}", shop.id);
    assert_eq!(
        shop.arn,
        format!(
            "arn:lattice:vpc-lattice:local:111111111111:servicenetwork/{}",
            shop.id
        )
    );
    assert_eq!(shop.services, ["orders", "orders-db"]);
    let tg = &a.target_groups[0];
    assert!(ids::has_id_shape(&tg.id, "tg-"), "{}", tg.id);
    assert_eq!(
        tg.arn,
        format!(
            "arn:lattice:vpc-lattice:local:222222222222:targetgroup/{}",
            tg.id
        )
    );
    let vpc = &a.vpcs[0];
    assert!(ids::has_id_shape(&vpc.id, "vpc-"), "{}", vpc.id);
    assert_eq!(
        vpc.arn,
        format!("arn:lattice:ec2:local:111111111111:vpc/{}", vpc.id)
    );
    assert_eq!(vpc.service_network.as_deref(), Some("shop"));
    assert_eq!(
        a.accounts[0].principals,
        ["arn:lattice:iam::111111111111:role/web"]
    );

    // All ids differ.
    let mut all: Vec<&str> = a.services.iter().map(|s| s.id.as_str()).collect();
    all.extend(a.target_groups.iter().map(|t| t.id.as_str()));
    all.extend(
        a.services
            .iter()
            .flat_map(|s| s.listeners.iter().map(|l| l.id.as_str())),
    );
    let count = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), count);
}

#[test]
fn default_dns_names_have_lattice_shape() {
    let resolved = resolve(
        &contract(),
        &Settings::default(),
        &mut VipAllocations::default(),
    )
    .unwrap();
    let orders = &resolved.services[0];
    let hex = orders.id.strip_prefix("svc-").unwrap();
    let labels: Vec<&str> = orders.dns_name.split('.').collect();
    assert_eq!(labels[0], format!("orders-{hex}"));
    assert_eq!(labels[1].len(), 7);
    assert!(labels[1].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(&labels[2..], ["vpc-lattice-svcs", "local", "on", "lattice"]);
    assert_eq!(
        orders.custom_domain_name.as_deref(),
        Some("orders.shop.internal")
    );

    let settings = Settings {
        region: "eu-west-1".into(),
        dns_suffix: "on.example".into(),
        ..Settings::default()
    };
    let resolved = resolve(&contract(), &settings, &mut VipAllocations::default()).unwrap();
    assert!(resolved.services[0]
        .dns_name
        .ends_with(".vpc-lattice-svcs.eu-west-1.on.example"));
    assert!(resolved.services[0]
        .arn
        .starts_with("arn:lattice:vpc-lattice:eu-west-1:"));
}

#[test]
fn vips_skip_the_agent_address_and_go_lowest_first() {
    let resolved = resolve(
        &contract(),
        &Settings::default(),
        &mut VipAllocations::default(),
    )
    .unwrap();
    assert_eq!(resolved.agent_address, ip(1));
    assert_eq!(vip_of(&resolved, "orders"), ip(2));
    assert_eq!(vip_of(&resolved, "orders-db"), ip(3));
}

#[test]
fn vips_persist_across_a_reload_of_the_state_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let settings = Settings::default();
    let first = {
        let dir = StateDir::open(tmp.path().join("state")).unwrap();
        let mut vips = VipAllocations::load(&dir).unwrap();
        assert!(vips.is_empty());
        let resolved = resolve(
            &with_services(&["alpha", "bravo", "charlie"]),
            &settings,
            &mut vips,
        )
        .unwrap();
        vips.save(&dir).unwrap();
        resolved
    };
    // A restart with the services in another order: every service keeps its address.
    let dir = StateDir::open(tmp.path().join("state")).unwrap();
    let mut vips = VipAllocations::load(&dir).unwrap();
    assert_eq!(vips.len(), 3);
    let again = resolve(
        &with_services(&["charlie", "bravo", "alpha"]),
        &settings,
        &mut vips,
    )
    .unwrap();
    for name in ["alpha", "bravo", "charlie"] {
        assert_eq!(vip_of(&first, name), vip_of(&again, name), "{name}");
    }
    let saved = std::fs::read_to_string(dir.path().join(VIPS_FILE)).unwrap();
    assert!(saved.contains("\"version\": 1"), "{saved}");
}

#[test]
fn vips_are_not_reused_while_the_service_exists_and_released_after() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = StateDir::open(tmp.path()).unwrap();
    let settings = Settings::default();
    let mut vips = VipAllocations::load(&dir).unwrap();
    let r = resolve(&with_services(&["alpha", "bravo"]), &settings, &mut vips).unwrap();
    assert_eq!((vip_of(&r, "alpha"), vip_of(&r, "bravo")), (ip(2), ip(3)));
    vips.save(&dir).unwrap();

    // `a` leaves and `n` arrives in the same change: `a`'s address stays taken.
    let mut vips = VipAllocations::load(&dir).unwrap();
    let r = resolve(&with_services(&["bravo", "november"]), &settings, &mut vips).unwrap();
    assert_eq!(
        (vip_of(&r, "bravo"), vip_of(&r, "november")),
        (ip(3), ip(4))
    );
    // Resolving without saving (validate, show) releases nothing either.
    let r = resolve(
        &with_services(&["bravo", "november", "mike"]),
        &settings,
        &mut vips.clone(),
    )
    .unwrap();
    assert_eq!(vip_of(&r, "mike"), ip(5));
    vips.save(&dir).unwrap();

    // Once saved without `a`, its address is free again and goes to the next service.
    let mut vips = VipAllocations::load(&dir).unwrap();
    assert_eq!(vips.len(), 2);
    assert_eq!(vips.get(&ids::service_id("111111111111", "alpha")), None);
    let r = resolve(
        &with_services(&["bravo", "november", "mike"]),
        &settings,
        &mut vips,
    )
    .unwrap();
    assert_eq!(vip_of(&r, "mike"), ip(2));
}

#[test]
fn pool_exhaustion_names_the_service() {
    let settings = Settings {
        vip_pool: "10.255.0.0/29".parse().unwrap(), // .2-.6: five services
        ..Settings::default()
    };
    let five = ["s01", "s02", "s03", "s04", "s05"];
    let r = resolve(
        &with_services(&five),
        &settings,
        &mut VipAllocations::default(),
    )
    .unwrap();
    assert_eq!(vip_of(&r, "s05"), Ipv4Addr::new(10, 255, 0, 6));
    let six = ["s01", "s02", "s03", "s04", "s05", "s06"];
    let err = resolve(
        &with_services(&six),
        &settings,
        &mut VipAllocations::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, ResolveError::PoolExhausted { service, capacity: 5, .. } if service == "s06"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "service \"s06\" (account 111111111111): no free virtual IP in pool 10.255.0.0/29: all 5 service addresses are allocated"
    );

    let tiny = Settings {
        vip_pool: "10.255.0.0/31".parse().unwrap(),
        ..Settings::default()
    };
    let err = resolve(
        &with_services(&["alpha"]),
        &tiny,
        &mut VipAllocations::default(),
    )
    .unwrap_err();
    assert!(matches!(err, ResolveError::PoolTooSmall { .. }), "{err}");
}

#[test]
fn a_vip_outside_a_changed_pool_is_reallocated() {
    let mut vips = VipAllocations::default();
    let config = with_services(&["alpha"]);
    resolve(&config, &Settings::default(), &mut vips).unwrap();
    let moved = Settings {
        vip_pool: "169.254.172.0/24".parse().unwrap(),
        ..Settings::default()
    };
    let r = resolve(&config, &moved, &mut vips).unwrap();
    assert_eq!(vip_of(&r, "alpha"), Ipv4Addr::new(169, 254, 172, 2));
}

#[test]
fn settings_and_vpcs_are_checked() {
    let config = contract();
    let bad_region = Settings {
        region: "Local_1".into(),
        ..Settings::default()
    };
    assert!(matches!(
        resolve(&config, &bad_region, &mut VipAllocations::default()),
        Err(ResolveError::InvalidRegion { .. })
    ));
    let overlapping = Settings {
        vip_pool: "10.92.5.0/24".parse().unwrap(),
        ..Settings::default()
    };
    let err = resolve(&config, &overlapping, &mut VipAllocations::default()).unwrap_err();
    assert!(
        matches!(&err, ResolveError::VpcOverlapsPool { vpc, .. } if vpc == "vpc-orders"),
        "{err}"
    );
}

#[test]
fn a_custom_domain_name_inside_lattices_own_domain_is_refused() {
    let with_custom = |custom: &str| {
        let text = format!(
            "accounts: [{{ id: \"111111111111\" }}]\nservices:\n  - {{ name: aaa, account: \"111111111111\" }}\n  - {{ name: bbb, account: \"111111111111\", customDomainName: {custom} }}\n"
        );
        config::parse_str(&text, Path::new("t.yaml")).unwrap_or_else(|e| panic!("{e}"))
    };
    let settings = Settings::default();
    let a = resolve(
        &with_services(&["aaa"]),
        &settings,
        &mut VipAllocations::default(),
    )
    .unwrap();
    // Service aaa's own default name, or any name under the domain: refused.
    for custom in [
        a.services[0].dns_name.clone(),
        "x.vpc-lattice-svcs.local.on.lattice".to_owned(),
        "X.VPC-Lattice-Svcs.local.on.lattice".to_owned(),
    ] {
        let err = resolve(
            &with_custom(&custom),
            &settings,
            &mut VipAllocations::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, ResolveError::CustomNameInServiceDomain { service, .. } if service == "bbb"),
            "{custom}: {err}"
        );
    }
    // Names that only end alike are the user's.
    for custom in [
        "my-vpc-lattice-svcs.local.on.lattice",
        "orders.shop.internal",
    ] {
        resolve(
            &with_custom(custom),
            &settings,
            &mut VipAllocations::default(),
        )
        .unwrap_or_else(|e| panic!("{custom}: {e}"));
    }
}

#[test]
fn corrupt_or_newer_vip_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = StateDir::open(tmp.path()).unwrap();
    dir.write_atomic(VIPS_FILE, br#"{"version": 2, "allocations": []}"#)
        .unwrap();
    assert!(matches!(
        VipAllocations::load(&dir),
        Err(ResolveError::VipFileVersion { found: 2, .. })
    ));
    dir.write_atomic(
        VIPS_FILE,
        br#"{"version": 1, "allocations": [
            {"serviceId": "svc-1", "vip": "169.254.171.2", "service": "alpha", "account": "1"},
            {"serviceId": "svc-2", "vip": "169.254.171.2", "service": "bravo", "account": "1"}]}"#,
    )
    .unwrap();
    assert!(matches!(
        VipAllocations::load(&dir),
        Err(ResolveError::VipFileCorrupt { .. })
    ));
    dir.write_atomic(VIPS_FILE, b"not json").unwrap();
    assert!(matches!(
        VipAllocations::load(&dir),
        Err(ResolveError::State(_))
    ));
}

#[test]
fn resolved_serializes_for_show_json() {
    let resolved = resolve(
        &contract(),
        &Settings::default(),
        &mut VipAllocations::default(),
    )
    .unwrap();
    let json = serde_json::to_value(&resolved).unwrap();
    assert_eq!(json["vipPool"], "169.254.171.0/24");
    assert_eq!(json["services"][0]["vip"], "169.254.171.2");
    assert_eq!(json["services"][0]["authType"], "AWS_IAM");
    assert_eq!(json["services"][0]["listeners"][0]["protocol"], "HTTPS");
    assert_eq!(
        json["services"][0]["customDomainName"],
        "orders.shop.internal"
    );
    assert_eq!(json["targetGroups"][2]["type"], "IP");
    assert_eq!(json["targetGroups"][2]["protocol"], "TCP");
    assert_eq!(json["vpcs"][0]["cidr"], "10.91.0.0/16");
}
