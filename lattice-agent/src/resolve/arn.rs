//! ARNs in Lattice's shapes, with the partition `lattice`.

/// The ARN partition of every lattice resource.
pub const PARTITION: &str = "lattice";

/// `arn:lattice:vpc-lattice:<region>:<account>:servicenetwork/sn-...`
pub fn service_network(region: &str, account: &str, id: &str) -> String {
    format!("arn:{PARTITION}:vpc-lattice:{region}:{account}:servicenetwork/{id}")
}

/// `arn:lattice:vpc-lattice:<region>:<account>:service/svc-...`
pub fn service(region: &str, account: &str, id: &str) -> String {
    format!("arn:{PARTITION}:vpc-lattice:{region}:{account}:service/{id}")
}

/// `arn:lattice:vpc-lattice:<region>:<account>:service/svc-.../listener/listener-...`
pub fn listener(region: &str, account: &str, service_id: &str, id: &str) -> String {
    format!("{}/listener/{id}", service(region, account, service_id))
}

/// `.../listener/listener-.../rule/rule-...`
pub fn rule(region: &str, account: &str, service_id: &str, listener_id: &str, id: &str) -> String {
    format!(
        "{}/rule/{id}",
        listener(region, account, service_id, listener_id)
    )
}

/// `arn:lattice:vpc-lattice:<region>:<account>:targetgroup/tg-...`
pub fn target_group(region: &str, account: &str, id: &str) -> String {
    format!("arn:{PARTITION}:vpc-lattice:{region}:{account}:targetgroup/{id}")
}

/// `arn:lattice:ec2:<region>:<account>:vpc/vpc-...`
pub fn vpc(region: &str, account: &str, id: &str) -> String {
    format!("arn:{PARTITION}:ec2:{region}:{account}:vpc/{id}")
}

/// `arn:lattice:iam::<account>:role/<name>` (or `user/<name>`); IAM ARNs have no region.
pub fn principal(account: &str, kind: &str, name: &str) -> String {
    format!("arn:{PARTITION}:iam::{account}:{kind}/{name}")
}
