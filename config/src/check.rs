//! The operator's check of a config file before applying it: a ConfigMap
//! manifest or a bare config document in, a printable report out (a summary
//! of every pool, or every error). The controller's `check-config`
//! subcommand prints [`check`]'s report and fails when [`CheckReport::failed`].

use std::fmt;

use crate::range::{Family, to_u128};
use crate::validate::{self, ConfigErrors, Source, Validated};
use crate::{CONFIG_KEY, DEFAULT_CONFIGMAP_NAME, DEFAULT_NAMESPACE, Pool};

/// What [`check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// What the file was, when that could be told.
    pub source: Option<Source>,
    /// The validated config, or every error.
    pub outcome: Result<Validated, ConfigErrors>,
}

/// Checks a file holding a ConfigMap manifest or a bare config document.
pub fn check(text: &str) -> CheckReport {
    let (source, outcome) = validate::read_file(text);
    CheckReport { source, outcome }
}

impl CheckReport {
    /// Whether the config would be refused.
    pub fn failed(&self) -> bool {
        self.outcome.is_err()
    }
}

impl fmt::Display for CheckReport {
    /// A header line, then one line per pool and per warning, or one line per
    /// error.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.source {
            Some(Source::Manifest {
                kind,
                namespace,
                name,
            }) => {
                let kind = if kind.is_empty() { "manifest" } else { kind };
                let name = name.as_deref().unwrap_or("(no name)");
                let mut what = match namespace {
                    Some(namespace) => format!("{kind} {namespace}/{name}"),
                    None => format!("{kind} {name}"),
                };
                if kind == "ConfigMap" {
                    what.push_str(&format!(" data.{CONFIG_KEY}"));
                }
                what
            }
            Some(Source::Document) | None => "config".to_owned(),
        };
        match &self.outcome {
            Err(errors) => {
                write!(f, "{what}: invalid, {}", plural(errors.len(), "error"))?;
                for error in errors {
                    write!(f, "\nerror: {error}")?;
                }
            }
            Ok(Validated { config, warnings }) => {
                write!(
                    f,
                    "{what}: valid, {}, {}",
                    plural(config.pools.len(), "pool"),
                    plural(warnings.len(), "warning")
                )?;
                for pool in &config.pools {
                    write!(f, "\n{}", PoolSummary(pool))?;
                }
                for warning in warnings {
                    write!(f, "\nwarning: {warning}")?;
                }
            }
        }
        if let Some(Source::Manifest {
            kind,
            namespace,
            name,
        }) = &self.source
            && kind == "ConfigMap"
        {
            let default = (Some(DEFAULT_NAMESPACE), Some(DEFAULT_CONFIGMAP_NAME));
            if (namespace.as_deref(), name.as_deref()) != default {
                write!(
                    f,
                    "\nnote: ferrolb reads the ConfigMap {DEFAULT_NAMESPACE}/{DEFAULT_CONFIGMAP_NAME} unless configured otherwise"
                )?;
            }
        }
        Ok(())
    }
}

/// `1 pool`, `2 pools`.
fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// One line about a pool.
struct PoolSummary<'a>(&'a Pool);

impl fmt::Display for PoolSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pool = self.0;
        write!(f, "pool {:?}: ", pool.name.0)?;
        let families: Vec<Family> = [Family::V4, Family::V6]
            .into_iter()
            .filter(|&family| pool.has_family(family))
            .collect();
        for (i, family) in families.iter().enumerate() {
            if i > 0 {
                f.write_str(" + ")?;
            }
            write!(f, "{} {family}", exact_count(pool, *family))?;
        }
        f.write_str(
            if families.len() == 1 && exact_count(pool, families[0]) == "1" {
                " address"
            } else {
                " addresses"
            },
        )?;
        write!(
            f,
            ", auto-assign: {}, avoid-buggy-ips: {}",
            pool.auto_assign, pool.avoid_buggy_ips
        )?;
        if !pool.node_selectors.is_empty() {
            write!(
                f,
                ", announced by nodes matching {}",
                plural(pool.node_selectors.len(), "selector")
            )?;
        }
        if !pool.interfaces.is_empty() {
            write!(f, ", on interfaces {}", pool.interfaces.join(", "))?;
        }
        if let Some(allocation) = &pool.service_allocation {
            match allocation.priority {
                Some(priority) => write!(f, ", priority {priority}")?,
                None => f.write_str(", no priority")?,
            }
            let mut namespaces: Vec<String> = allocation.namespaces.clone();
            if !allocation.namespace_selectors.is_empty() {
                namespaces.push(format!(
                    "those matching {}",
                    plural(allocation.namespace_selectors.len(), "selector")
                ));
            }
            if !namespaces.is_empty() {
                write!(f, ", for namespaces {}", namespaces.join(", "))?;
            }
            if !allocation.service_selectors.is_empty() {
                write!(
                    f,
                    ", for Services matching {}",
                    plural(allocation.service_selectors.len(), "selector")
                )?;
            }
        }
        Ok(())
    }
}

/// The number of addresses of `family` the pool hands out, exactly: unlike
/// [`Pool::address_count`], a pool of all of IPv6 shows 2^128.
fn exact_count(pool: &Pool, family: Family) -> String {
    if family == Family::V4 {
        // At most 2^32: never saturated.
        return pool.address_count(family).to_string();
    }
    let mut total: Option<u128> = Some(0);
    for range in pool.ranges.iter().filter(|r| r.family() == family) {
        let span = to_u128(range.last()) - to_u128(range.first());
        total = total
            .and_then(|t| t.checked_add(span))
            .and_then(|t| t.checked_add(1));
    }
    // Ranges never overlap, so the total is at most 2^128, and a u128 only
    // overflows when it is exactly that.
    total.map_or_else(
        || "340282366920938463463374607431768211456".to_owned(),
        |t| t.to_string(),
    )
}
