//! The authn/authz phase, as far as it goes before the policy engine exists: `NONE`
//! admits everyone; `AWS_IAM` on the service network or the service denies every
//! request, since nothing can prove a policy allows it yet. Denying is Lattice's own
//! default for AWS_IAM without an allowing statement, so this never lets through a
//! request that Lattice would refuse; the policy engine (issue 5) replaces the denial
//! with the real evaluation.

use crate::{
    config::{AuthType, Config},
    resolve::Resolved,
};

use super::sites::Site;

/// Why a request was denied, in the words Lattice's 403 body uses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "AccessDeniedException: User: anonymous is not authorized to perform: \
     vpc-lattice-svcs:Invoke on resource: {resource} because no {level}-based policy \
     allows the vpc-lattice-svcs:Invoke action"
)]
pub struct Denied {
    /// The invoked resource: `<service ARN>/<request path>`.
    pub resource: String,
    /// `network` or `service`: the level that denied.
    pub level: &'static str,
}

/// Whether a request for `path` through `site` may go on.
pub fn authorize(
    config: &Config,
    resolved: &Resolved,
    site: &Site,
    path: &str,
) -> Result<(), Denied> {
    let resource = || format!("{}{}", resolved.services[site.service].arn, path);
    if config.service_networks()[site.network].auth.auth_type() == AuthType::AwsIam {
        return Err(Denied {
            resource: resource(),
            level: "network",
        });
    }
    if config.services()[site.service].auth.auth_type() == AuthType::AwsIam {
        return Err(Denied {
            resource: resource(),
            level: "service",
        });
    }
    Ok(())
}
