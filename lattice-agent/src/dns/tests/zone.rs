//! The pure part: which names each VPC resolves, and how every kind of query is
//! answered.

use hickory_proto::rr::{DNSClass, RecordType};

use super::{service, zones};
use crate::{
    dns::{zone::lattice_domain, Answer},
    resolve::dns::partition_label,
};

const DOMAIN: &str = "vpc-lattice-svcs.local.on.lattice";

#[derive(Debug, Clone, Copy)]
enum Apex {
    Lattice,
    Own,
}

#[derive(Debug, Clone, Copy)]
enum Want {
    Addr(&'static str),
    Soa(Apex),
    NoData(Apex),
    NxDomain(Apex),
    Refused,
    Forward,
}

struct Case {
    what: &'static str,
    netns: &'static str,
    /// `{orders}`, `{ORDERS}`, `{api}`, `{billing}`: the service's default name (upper
    /// case for the capitals); `{p111}`, `{p222}`: the accounts' partition names.
    name: &'static str,
    qtype: RecordType,
    class: DNSClass,
    want: Want,
}

const IN: DNSClass = DNSClass::IN;

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    use RecordType::*;
    use Want::*;
    vec![
        Case { what: "default name", netns: "web-a", name: "{orders}", qtype: A, class: IN, want: Addr("orders") },
        Case { what: "trailing dot, second namespace of the VPC", netns: "web-b", name: "{orders}.", qtype: A, class: IN, want: Addr("orders") },
        Case { what: "any case", netns: "web-a", name: "{ORDERS}", qtype: A, class: IN, want: Addr("orders") },
        Case { what: "custom name (configured in mixed case)", netns: "web-a", name: "orders.shop.internal", qtype: A, class: IN, want: Addr("orders") },
        Case { what: "custom name in capitals with the dot", netns: "web-b", name: "ORDERS.SHOP.INTERNAL.", qtype: A, class: IN, want: Addr("orders") },
        Case { what: "a service with an HTTP listener", netns: "web-a", name: "{api}", qtype: A, class: IN, want: Addr("api") },
        Case { what: "ANY is the A record", netns: "web-a", name: "{orders}", qtype: ANY, class: IN, want: Addr("orders") },
        Case { what: "class ANY", netns: "web-a", name: "{orders}", qtype: A, class: DNSClass::ANY, want: Addr("orders") },
        Case { what: "AAAA: VIPs are IPv4 only", netns: "web-a", name: "{orders}", qtype: AAAA, class: IN, want: NoData(Apex::Lattice) },
        Case { what: "AAAA of a custom name", netns: "web-a", name: "orders.shop.internal", qtype: AAAA, class: IN, want: NoData(Apex::Own) },
        Case { what: "TXT", netns: "web-a", name: "{orders}", qtype: TXT, class: IN, want: NoData(Apex::Lattice) },
        Case { what: "SOA of a default name: not an apex", netns: "web-a", name: "{orders}", qtype: SOA, class: IN, want: NoData(Apex::Lattice) },
        Case { what: "SOA of a reachable custom name: its own apex", netns: "web-a", name: "orders.shop.internal", qtype: SOA, class: IN, want: Soa(Apex::Own) },
        Case { what: "an unassociated network's service", netns: "web-a", name: "{billing}", qtype: A, class: IN, want: NxDomain(Apex::Lattice) },
        Case { what: "its AAAA too", netns: "web-a", name: "{billing}", qtype: AAAA, class: IN, want: NxDomain(Apex::Lattice) },
        Case { what: "an unassociated network's custom name: not forwarded", netns: "web-a", name: "billing.corp.internal", qtype: A, class: IN, want: NxDomain(Apex::Own) },
        Case { what: "the other VPC reaches billing", netns: "other", name: "{billing}", qtype: A, class: IN, want: Addr("billing") },
        Case { what: "and billing's custom name", netns: "other", name: "billing.corp.internal", qtype: A, class: IN, want: Addr("billing") },
        Case { what: "but not orders", netns: "other", name: "{orders}", qtype: A, class: IN, want: NxDomain(Apex::Lattice) },
        Case { what: "nor orders' custom name", netns: "other", name: "orders.shop.internal", qtype: A, class: IN, want: NxDomain(Apex::Own) },
        Case { what: "a VPC with no network", netns: "lonely", name: "{api}", qtype: A, class: IN, want: NxDomain(Apex::Lattice) },
        Case { what: "a VPC with no network still forwards", netns: "lonely", name: "example.com", qtype: A, class: IN, want: Forward },
        Case { what: "a namespace the config does not name", netns: "stranger", name: "{orders}", qtype: A, class: IN, want: NxDomain(Apex::Lattice) },
        Case { what: "its custom names too", netns: "stranger", name: "orders.shop.internal", qtype: A, class: IN, want: NxDomain(Apex::Own) },
        Case { what: "an unknown lattice name", netns: "web-a", name: "nope-0123456789abcdef0.abcdefg.vpc-lattice-svcs.local.on.lattice", qtype: A, class: IN, want: NxDomain(Apex::Lattice) },
        Case { what: "below a service's name", netns: "web-a", name: "www.{orders}", qtype: A, class: IN, want: NxDomain(Apex::Lattice) },
        Case { what: "the domain's apex: SOA", netns: "web-a", name: DOMAIN, qtype: SOA, class: IN, want: Soa(Apex::Lattice) },
        Case { what: "the domain's apex: A is NODATA", netns: "lonely", name: "VPC-LATTICE-SVCS.local.on.lattice.", qtype: A, class: IN, want: NoData(Apex::Lattice) },
        Case { what: "a partition with a reachable service: empty non-terminal", netns: "web-a", name: "{p111}", qtype: A, class: IN, want: NoData(Apex::Lattice) },
        Case { what: "a partition with none reachable", netns: "web-a", name: "{p222}", qtype: A, class: IN, want: NxDomain(Apex::Lattice) },
        Case { what: "the other VPC's view of the partitions", netns: "other", name: "{p111}", qtype: A, class: IN, want: NxDomain(Apex::Lattice) },
        Case { what: "lattice names in another class", netns: "web-a", name: "{orders}", qtype: TXT, class: DNSClass::CH, want: Refused },
        Case { what: "other names in another class", netns: "web-a", name: "version.bind", qtype: TXT, class: DNSClass::CH, want: Forward },
        Case { what: "other names", netns: "web-a", name: "example.com.", qtype: A, class: IN, want: Forward },
        Case { what: "other names, AAAA", netns: "web-a", name: "example.com", qtype: AAAA, class: IN, want: Forward },
        Case { what: "below a custom name: not lattice's", netns: "web-a", name: "www.orders.shop.internal", qtype: A, class: IN, want: Forward },
        Case { what: "above a custom name: not lattice's", netns: "web-a", name: "shop.internal", qtype: A, class: IN, want: Forward },
        Case { what: "above the domain: not lattice's", netns: "web-a", name: "local.on.lattice", qtype: A, class: IN, want: Forward },
        Case { what: "a name that only ends like the domain", netns: "web-a", name: "xvpc-lattice-svcs.local.on.lattice", qtype: A, class: IN, want: Forward },
        Case { what: "the root", netns: "web-a", name: ".", qtype: NS, class: IN, want: Forward },
    ]
}

#[test]
fn answers() {
    let (zones, resolved) = zones("orders");
    let dns = |s: &str| service(&resolved, s).dns_name.clone();
    let mut failures = Vec::new();
    for case in cases() {
        let name = case
            .name
            .replace("{orders}", &dns("orders"))
            .replace("{ORDERS}", &dns("orders").to_ascii_uppercase())
            .replace("{api}", &dns("api"))
            .replace("{billing}", &dns("billing"))
            .replace(
                "{p111}",
                &format!("{}.{DOMAIN}", partition_label("111111111111")),
            )
            .replace(
                "{p222}",
                &format!("{}.{DOMAIN}", partition_label("222222222222")),
            );
        let own = name.trim_end_matches('.').to_ascii_lowercase();
        let apex = |a: Apex| match a {
            Apex::Lattice => DOMAIN.to_owned(),
            Apex::Own => own.clone(),
        };
        let want = match case.want {
            Want::Addr(s) => Answer::Address {
                vip: service(&resolved, s).vip,
                apex: if own.ends_with(DOMAIN) {
                    DOMAIN.to_owned()
                } else {
                    own.clone()
                },
            },
            Want::Soa(a) => Answer::Soa { apex: apex(a) },
            Want::NoData(a) => Answer::NoData { apex: apex(a) },
            Want::NxDomain(a) => Answer::NxDomain { apex: apex(a) },
            Want::Refused => Answer::Refused,
            Want::Forward => Answer::Forward,
        };
        let got = zones.answer(case.netns, &name, case.qtype, case.class);
        if got != want {
            failures.push(format!(
                "{}: {} {} {} in {}: got {got:?}, want {want:?}",
                case.what, name, case.qtype, case.class, case.netns
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn records_per_vpc() {
    let (zones, resolved) = zones("orders");
    assert_eq!(zones.domain(), DOMAIN);
    assert_eq!(lattice_domain("local", "on.lattice"), DOMAIN);
    let web = zones.vpc_of("web-a").expect("web-a is vpc-web's");
    assert_eq!(web.vpc, "vpc-web");
    assert_eq!(Some(web), zones.vpc_of("web-b"), "one zone per VPC");
    let names: Vec<(&str, &str)> = web
        .names
        .iter()
        .map(|(n, r)| (n.as_str(), r.service.as_str()))
        .collect();
    let orders = service(&resolved, "orders").dns_name.as_str();
    let api = service(&resolved, "api").dns_name.as_str();
    let mut want = vec![
        (orders, "orders"),
        ("orders.shop.internal", "orders"),
        (api, "api"),
    ];
    want.sort();
    assert_eq!(names, want);
    assert_eq!(
        web.interior.iter().collect::<Vec<_>>(),
        [&format!("{}.{DOMAIN}", partition_label("111111111111"))]
    );
    assert!(zones.vpc_of("lonely").unwrap().names.is_empty());
    assert!(
        zones.vpc_of("orders").unwrap().names.is_empty(),
        "the targets' VPC is associated with nothing"
    );
    // A VPC of cgroups has no namespace to serve in.
    assert!(zones.vpc_of("lattice/hosts").is_none());
}

#[test]
fn a_renamed_service_answers_under_its_new_name_only() {
    let (before, old) = zones("orders");
    let (after, new) = zones("orders-next");
    let old_name = service(&old, "orders").dns_name.clone();
    let new_name = service(&new, "orders-next").dns_name.clone();
    assert_ne!(old_name, new_name);
    assert!(matches!(
        before.answer("web-a", &old_name, RecordType::A, DNSClass::IN),
        Answer::Address { .. }
    ));
    assert_eq!(
        after.answer("web-a", &old_name, RecordType::A, DNSClass::IN),
        Answer::NxDomain {
            apex: DOMAIN.to_owned()
        }
    );
    assert_eq!(
        after.answer("web-a", &new_name, RecordType::A, DNSClass::IN),
        Answer::Address {
            vip: service(&new, "orders-next").vip,
            apex: DOMAIN.to_owned()
        }
    );
    assert_ne!(
        before.serial(),
        after.serial(),
        "the serial follows the records"
    );
    assert_eq!(before.serial(), zones("orders").0.serial(), "and only them");
}
