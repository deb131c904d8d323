//! Turns the ConfigMap's text into a [`Config`], or into every reason it is
//! refused. Reading stops at the first YAML or shape error (nothing can be
//! judged past it); past that point every rule runs and all errors are
//! collected. Warnings (accepted but probably unintended) ride along with a
//! valid config. Start with [`Config::from_yaml`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde_yaml::Value;

use crate::Config;
use crate::budget::{self, Limit};
use crate::pool::{
    self, LabelOperator, LabelRequirement, NodeSelector, Pool, PoolName, ServiceAllocation,
};
use crate::range::{AddressError, AddressRange, Family};
use crate::raw::{
    RawConfig, RawManifest, RawNodeSelector, RawPool, RawRequirement, RawServiceAllocation,
};
use crate::special::{SpecialPurpose, SpecialRange};

/// The key of the ConfigMap's `data` holding the YAML document.
pub const CONFIG_KEY: &str = "config";

/// Where in the config something lies: the pool when its name is known, and
/// the path of the field, e.g. `pool "default": address-pools[0].addresses[2]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigPath {
    /// The name of the pool the field belongs to, if any and if it has one.
    pub pool: Option<PoolName>,
    /// The field, from the document's root: `address-pools[1].addresses[0]`;
    /// empty for the document as a whole.
    pub path: String,
}

impl ConfigPath {
    /// The path of a top-level field or of the whole document (`""`).
    fn root(path: &str) -> ConfigPath {
        ConfigPath {
            pool: None,
            path: path.to_owned(),
        }
    }
}

impl fmt::Display for ConfigPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pool {
            Some(pool) => write!(f, "pool {:?}: {}", pool.0, self.path),
            None => f.write_str(&self.path),
        }
    }
}

/// A place in a YAML text, 1-based. `within` names the string the text came
/// from when it was embedded in a larger document (`data.config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextPosition {
    /// The field holding the text, or `None` for the file itself.
    pub within: Option<&'static str>,
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1.
    pub column: usize,
}

impl fmt::Display for TextPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(within) = self.within {
            write!(f, "{within} ")?;
        }
        write!(f, "line {} column {}", self.line, self.column)
    }
}

/// One reason a config is refused, with where it lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The field at fault (empty for a text that could not be read at all:
    /// the reason then carries the line and column).
    pub path: ConfigPath,
    /// What is wrong.
    pub reason: Reason,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.path.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// A stable label for metrics and events: the reason's.
    pub fn label(&self) -> &'static str {
        self.reason.label()
    }
}

/// Why a config is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// Not well-formed YAML, or YAML of the wrong shape (an unknown field, a
    /// list where a string belongs, …). The message is the YAML reader's,
    /// which names the field's path.
    #[error("{}{message}", position.map(|p| format!("{p}: ")).unwrap_or_default())]
    Unreadable {
        /// Where the reader stopped, when it knows.
        position: Option<TextPosition>,
        /// What it found wrong.
        message: String,
    },
    /// A text too long, or whose YAML aliases expand too far, to be read
    /// within bounded time and memory.
    #[error("{limit}")]
    TooLarge {
        /// The bound it broke.
        limit: Limit,
    },
    /// A manifest of another kind than ConfigMap.
    #[error("this manifest is a {kind}, not a ConfigMap")]
    NotAConfigMap {
        /// The manifest's `kind`.
        kind: String,
    },
    /// A ConfigMap without the key holding the config.
    #[error("the ConfigMap has no {CONFIG_KEY:?} key in data{}", list_keys(keys))]
    NoConfigKey {
        /// The keys it has.
        keys: Vec<String>,
    },
    /// A BGP section or a BGP pool.
    #[error("BGP is not supported: ferrolb announces addresses over layer 2 only; {remedy}")]
    BgpNotSupported {
        /// What to do instead.
        remedy: &'static str,
    },
    /// A pool without `name`.
    #[error("the pool has no name")]
    MissingName,
    /// A pool whose name is empty or only spaces.
    #[error("the pool name is empty")]
    EmptyName,
    /// A second pool of the same name.
    #[error("the pool name {name:?} is already used by {first}")]
    DuplicateName {
        /// The name.
        name: String,
        /// The path of the first pool of that name.
        first: String,
    },
    /// A pool without `protocol`.
    #[error("protocol is missing; ferrolb pools need protocol: layer2")]
    MissingProtocol,
    /// A protocol that is neither layer2 nor bgp.
    #[error("unknown protocol {protocol:?}; ferrolb pools need protocol: layer2")]
    UnknownProtocol {
        /// The protocol written.
        protocol: String,
    },
    /// A pool whose `addresses` is missing or empty.
    #[error("the pool has no addresses")]
    NoAddresses,
    /// An `addresses` entry that is neither a CIDR nor a span.
    #[error(transparent)]
    BadAddress(AddressError),
    /// Two entries, of one pool or of two, holding common addresses.
    #[error(
        "{range} overlaps {other_range} of {}({}); both hold {shared}",
        other.pool.as_ref().map(|p| format!("pool {:?} ", p.0)).unwrap_or_default(),
        other.path
    )]
    Overlap {
        /// This entry as written.
        range: String,
        /// The other entry as written.
        other_range: String,
        /// Where the other entry is.
        other: ConfigPath,
        /// The addresses both hold.
        shared: AddressRange,
    },
    /// An entry holding every address of its family (`0.0.0.0/0`, `::/0`).
    #[error(
        "{range} is every {family} address, not a pool; list the addresses set aside for load balancers on this network"
    )]
    WholeInternet {
        /// The entry as written.
        range: String,
        /// Its family.
        family: Family,
    },
    /// An entry holding special-purpose addresses (loopback, multicast, …),
    /// which no node may answer ARP or NDP for.
    #[error("{}", special_purpose_message(range, whole, special, shared))]
    SpecialPurpose {
        /// The entry as written.
        range: String,
        /// The addresses it means.
        whole: AddressRange,
        /// The special-purpose range it reaches into.
        special: SpecialRange,
        /// The addresses both hold.
        shared: AddressRange,
    },
    /// A `match-expressions` entry without a key.
    #[error("the match expression has no key")]
    SelectorWithoutKey,
    /// A `match-expressions` operator that is not one of the four.
    #[error("unknown operator {operator:?}; use In, NotIn, Exists or DoesNotExist")]
    UnknownOperator {
        /// The operator written.
        operator: String,
    },
    /// `In` or `NotIn` without values.
    #[error("operator {operator} needs at least one value")]
    OperatorNeedsValues {
        /// The operator.
        operator: &'static str,
    },
    /// `Exists` or `DoesNotExist` with values.
    #[error("operator {operator} takes no values")]
    OperatorTakesNoValues {
        /// The operator.
        operator: &'static str,
    },
    /// An interface name Linux would refuse.
    #[error("{name:?} is not an interface name: {why}")]
    BadInterfaceName {
        /// The name written.
        name: String,
        /// What Linux would object to.
        why: &'static str,
    },
    /// A `service-allocation` priority below zero.
    #[error(
        "priority {priority} is negative; use 1 or more (lower is tried first), or leave it out to come after every pool that has one"
    )]
    NegativePriority {
        /// The priority written.
        priority: i64,
    },
    /// A `service-allocation` priority too large to be a priority.
    #[error("priority {priority} is larger than {}", u32::MAX)]
    PriorityTooLarge {
        /// The priority written.
        priority: i64,
    },
    /// A namespace name Kubernetes would refuse.
    #[error("{name:?} is not a namespace name: {why}")]
    BadNamespaceName {
        /// The name written.
        name: String,
        /// What Kubernetes would object to.
        why: &'static str,
    },
    /// A namespace listed twice in `service-allocation.namespaces`.
    #[error("namespace {name:?} is listed twice")]
    DuplicateNamespace {
        /// The namespace.
        name: String,
    },
}

impl Reason {
    /// A stable label for metrics and events.
    pub fn label(&self) -> &'static str {
        match self {
            Reason::Unreadable { .. } => "unreadable",
            Reason::TooLarge { .. } => "too_large",
            Reason::NotAConfigMap { .. } => "not_a_configmap",
            Reason::NoConfigKey { .. } => "no_config_key",
            Reason::BgpNotSupported { .. } => "bgp_not_supported",
            Reason::MissingName => "missing_name",
            Reason::EmptyName => "empty_name",
            Reason::DuplicateName { .. } => "duplicate_name",
            Reason::MissingProtocol => "missing_protocol",
            Reason::UnknownProtocol { .. } => "unknown_protocol",
            Reason::NoAddresses => "no_addresses",
            Reason::BadAddress(_) => "bad_address",
            Reason::Overlap { .. } => "overlap",
            Reason::WholeInternet { .. } | Reason::SpecialPurpose { .. } => "special_purpose",
            Reason::SelectorWithoutKey
            | Reason::UnknownOperator { .. }
            | Reason::OperatorNeedsValues { .. }
            | Reason::OperatorTakesNoValues { .. } => "bad_node_selector",
            Reason::BadInterfaceName { .. } => "bad_interface",
            Reason::NegativePriority { .. } | Reason::PriorityTooLarge { .. } => "bad_priority",
            Reason::BadNamespaceName { .. } | Reason::DuplicateNamespace { .. } => "bad_namespace",
        }
    }
}

/// `127.0.0.0/24 lies in the loopback range 127.0.0.0/8 (…)`, or `… reaches
/// into …; it holds …` when only part of the entry is special.
fn special_purpose_message(
    range: &str,
    whole: &AddressRange,
    special: &SpecialRange,
    shared: &AddressRange,
) -> String {
    if shared != whole {
        format!("{range} reaches into {special}; it holds {shared}")
    } else if *whole == special.range() && whole.size() == 1 {
        format!("{range} is {special}")
    } else {
        format!("{range} lies in {special}")
    }
}

/// `" (it has: a, b)"`, or `" (it has none)"`.
fn list_keys(keys: &[String]) -> String {
    if keys.is_empty() {
        " (data is empty)".to_owned()
    } else {
        format!(" (it has: {})", keys.join(", "))
    }
}

/// Every reason a config was refused, in document order; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// The errors, given at least one.
    fn new(errors: Vec<ConfigError>) -> Option<ConfigErrors> {
        (!errors.is_empty()).then_some(ConfigErrors(errors))
    }

    /// One error.
    fn one(path: ConfigPath, reason: Reason) -> ConfigErrors {
        ConfigErrors(vec![ConfigError { path, reason }])
    }

    /// The errors, in document order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// How many there are (at least one).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: there is at least one error. Here for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first error, which is always there.
    pub fn first(&self) -> &ConfigError {
        // `new` and `one` never build an empty list.
        &self.0[0]
    }

    /// The errors, as a vector.
    pub fn into_vec(self) -> Vec<ConfigError> {
        self.0
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        one_per_line(f, &self.0)
    }
}

/// Writes `items` one per line, without a final newline.
pub(crate) fn one_per_line<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    items: &[T],
) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            writeln!(f)?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

impl std::error::Error for ConfigErrors {}

/// Something accepted that is probably not what the operator meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The field concerned.
    pub path: ConfigPath,
    /// What looks wrong.
    pub concern: Concern,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.concern)
    }
}

/// What looks wrong in an accepted config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Concern {
    /// A CIDR whose address is not the network's, accepted as the network.
    #[error("{written} has host bits set; it means {network}")]
    HostBitsSet {
        /// The entry as written.
        written: String,
        /// The network it stands for.
        network: String,
    },
    /// No pools at all.
    #[error("no address pools are defined; no Service will get an address")]
    NoPools,
    /// An empty BGP section, ignored.
    #[error("ignored: it is empty, and BGP is not supported")]
    EmptyBgpSection,
    /// `avoid-buggy-ips` on a pool without IPv4 addresses.
    #[error("avoid-buggy-ips has no effect: the pool has no IPv4 addresses")]
    AvoidBuggyIpsWithoutIpv4,
    /// `avoid-buggy-ips` excludes every address of the pool.
    #[error(
        "the pool has no address to hand out: every one ends in .0 or .255 and avoid-buggy-ips is set"
    )]
    NoUsableAddresses,
    /// An interface listed twice.
    #[error("interface {name:?} is listed twice")]
    DuplicateInterface {
        /// The interface.
        name: String,
    },
    /// `priority: 0`, which MetalLB reads as no priority, and so does ferrolb.
    #[error(
        "priority 0 means no priority (as in MetalLB): the pool comes after every pool that has one; leave it out or use 1 or more"
    )]
    PriorityZero,
}

impl Concern {
    /// A stable label for metrics and events.
    pub fn label(&self) -> &'static str {
        match self {
            Concern::HostBitsSet { .. } => "host_bits_set",
            Concern::NoPools => "no_pools",
            Concern::EmptyBgpSection => "empty_bgp_section",
            Concern::AvoidBuggyIpsWithoutIpv4 => "avoid_buggy_ips_without_ipv4",
            Concern::NoUsableAddresses => "no_usable_addresses",
            Concern::DuplicateInterface { .. } => "duplicate_interface",
            Concern::PriorityZero => "priority_zero",
        }
    }
}

/// A config that passed validation, with what looked odd in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// The config.
    pub config: Config,
    /// Warnings, in document order; empty for a clean config.
    pub warnings: Vec<ConfigWarning>,
}

/// What a file handed to [`read_file`] turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A bare config document (what goes under `data.config`).
    Document,
    /// A Kubernetes manifest; if a ConfigMap, its config is `data.config`.
    Manifest {
        /// Its `kind`.
        kind: String,
        /// `metadata.namespace`, if written.
        namespace: Option<String>,
        /// `metadata.name`, if written.
        name: Option<String>,
    },
}

/// Reads and validates one config document (the text under `data.config`).
/// An empty document is a valid config without pools, as in MetalLB.
pub fn from_yaml(text: &str) -> Result<Validated, ConfigErrors> {
    validate(read_document(text, None)?)
}

/// Reads and validates the config of a ConfigMap, given its `data`. Line
/// and column of YAML errors count from the start of the `config` string.
pub fn from_configmap_data(data: &BTreeMap<String, String>) -> Result<Validated, ConfigErrors> {
    let Some(text) = data.get(CONFIG_KEY) else {
        return Err(ConfigErrors::one(
            ConfigPath::root("data"),
            Reason::NoConfigKey {
                keys: data.keys().cloned().collect(),
            },
        ));
    };
    validate(read_document(text, Some("data.config"))?)
}

/// Reads a file holding either a whole ConfigMap manifest (`kind:
/// ConfigMap`, config under `data.config`) or a bare config document, and
/// validates the config. Says which it was, when that could be told.
pub fn read_file(text: &str) -> (Option<Source>, Result<Validated, ConfigErrors>) {
    if let Err(e) = within_budget(text) {
        return (None, Err(e));
    }
    let value: Value = match serde_yaml::from_str(text) {
        Ok(value) => value,
        Err(e) => return (None, Err(unreadable(&e, None))),
    };
    let is_manifest = value
        .as_mapping()
        .is_some_and(|m| m.contains_key("kind") || m.contains_key("apiVersion"));
    if !is_manifest {
        return (Some(Source::Document), from_yaml(text));
    }
    let manifest: RawManifest = match serde_yaml::from_str(text) {
        Ok(manifest) => manifest,
        Err(e) => return (None, Err(unreadable(&e, None))),
    };
    let kind = manifest.kind.unwrap_or_default();
    let source = Source::Manifest {
        kind: kind.clone(),
        namespace: manifest.metadata.namespace,
        name: manifest.metadata.name,
    };
    if kind != "ConfigMap" {
        let error = ConfigErrors::one(ConfigPath::root("kind"), Reason::NotAConfigMap { kind });
        return (Some(source), Err(error));
    }
    let data = manifest.data.unwrap_or_default();
    (Some(source), from_configmap_data(&data))
}

/// Reads YAML text into the raw structs; `within` names the field the text
/// came from, for positions.
fn read_document(text: &str, within: Option<&'static str>) -> Result<RawConfig, ConfigErrors> {
    within_budget(text)?;
    // Reading a `Value` first catches duplicate keys anywhere, and tells an
    // empty document (a valid, empty config) from a wrong one.
    let value: Value = serde_yaml::from_str(text).map_err(|e| unreadable(&e, within))?;
    if value.is_null() {
        return Ok(RawConfig::default());
    }
    // From the text again, not from `value`: only the text has positions.
    serde_yaml::from_str(text).map_err(|e| unreadable(&e, within))
}

/// Refuses a text that would cost too much to read; the one gate every
/// reading of a text passes first.
fn within_budget(text: &str) -> Result<(), ConfigErrors> {
    budget::check(text)
        .map_err(|limit| ConfigErrors::one(ConfigPath::default(), Reason::TooLarge { limit }))
}

/// A YAML reader's error, with its position relative to `within`.
fn unreadable(error: &serde_yaml::Error, within: Option<&'static str>) -> ConfigErrors {
    let mut message = error.to_string();
    let position = error.location().map(|l| TextPosition {
        within,
        line: l.line(),
        column: l.column(),
    });
    if let Some(p) = position {
        // The reader's message ends with the position we report up front.
        let suffix = format!(" at line {} column {}", p.line, p.column);
        if let Some(at) = message.find(&suffix) {
            message.replace_range(at..at + suffix.len(), "");
        }
    }
    if let Some(within) = within {
        // Any other position it mentions is relative to the same string.
        message = message.replace(" at line ", &format!(" at {within} line "));
    }
    ConfigErrors::one(
        ConfigPath::default(),
        Reason::Unreadable { position, message },
    )
}

/// Where a range was written: pool index and entry index.
type EntryAt = (usize, usize);

/// The rules, over a document that was read.
struct Validation {
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigWarning>,
}

impl Validation {
    fn error(&mut self, path: ConfigPath, reason: Reason) {
        self.errors.push(ConfigError { path, reason });
    }

    fn warn(&mut self, path: ConfigPath, concern: Concern) {
        self.warnings.push(ConfigWarning { path, concern });
    }

    /// A top-level BGP section: refused unless empty.
    fn refuse_bgp(&mut self, value: Option<&Value>, path: ConfigPath, remedy: &'static str) {
        match value {
            None => {}
            Some(v) if is_empty(v) => self.warn(path, Concern::EmptyBgpSection),
            Some(_) => self.error(path, Reason::BgpNotSupported { remedy }),
        }
    }
}

/// Whether a YAML value says nothing: null, `[]` or `{}`.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Sequence(s) => s.is_empty(),
        Value::Mapping(m) => m.is_empty(),
        _ => false,
    }
}

/// Applies every rule to a read document.
fn validate(raw: RawConfig) -> Result<Validated, ConfigErrors> {
    let mut v = Validation {
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    v.refuse_bgp(
        raw.peers.as_ref(),
        ConfigPath::root("peers"),
        "remove peers",
    );
    v.refuse_bgp(
        raw.bgp_communities.as_ref(),
        ConfigPath::root("bgp-communities"),
        "remove bgp-communities",
    );
    v.refuse_bgp(
        raw.bfd_profiles.as_ref(),
        ConfigPath::root("bfd-profiles"),
        "remove bfd-profiles",
    );

    let raw_pools = raw.address_pools.unwrap_or_default();
    if raw_pools.is_empty() {
        v.warn(ConfigPath::root("address-pools"), Concern::NoPools);
    }
    let mut pools = Vec::with_capacity(raw_pools.len());
    let mut first_of_name: HashMap<String, usize> = HashMap::new();
    // Every range read, tagged with where it was written, for the overlap
    // check; and the text as written, for its message.
    let mut entries: Vec<(AddressRange, EntryAt)> = Vec::new();
    let mut written: HashMap<EntryAt, String> = HashMap::new();
    let mut pool_names: Vec<Option<PoolName>> = Vec::with_capacity(raw_pools.len());

    for (i, raw_pool) in raw_pools.into_iter().enumerate() {
        let at = format!("address-pools[{i}]");
        let name = pool_name(&mut v, &raw_pool, &at, i, &mut first_of_name);
        pool_names.push(name.clone());
        let path = |field: &str| ConfigPath {
            pool: name.clone(),
            path: format!("{at}{field}"),
        };
        if let Some(pool) = pool(&mut v, raw_pool, &path, |j, range, text| {
            entries.push((range, (i, j)));
            written.insert((i, j), text.to_owned());
        }) {
            pools.push(pool);
        }
    }

    // Report each overlap at the entry written later, naming the earlier.
    let mut found: Vec<(EntryAt, EntryAt, AddressRange)> = pool::overlaps(&entries)
        .into_iter()
        .map(|o| {
            let (a, b) = (o.earlier.min(o.later), o.earlier.max(o.later));
            (b, a, o.shared)
        })
        .collect();
    found.sort_by_key(|&(later, earlier, _)| (later, earlier));
    let entry_path = |(i, j): EntryAt| ConfigPath {
        pool: pool_names[i].clone(),
        path: format!("address-pools[{i}].addresses[{j}]"),
    };
    for (later, earlier, shared) in found {
        let reason = Reason::Overlap {
            range: written[&later].clone(),
            other_range: written[&earlier].clone(),
            other: entry_path(earlier),
            shared,
        };
        v.error(entry_path(later), reason);
    }

    match ConfigErrors::new(v.errors) {
        Some(errors) => Err(errors),
        None => Ok(Validated {
            config: Config { pools },
            warnings: v.warnings,
        }),
    }
}

/// The pool's name if it has a usable one; records what is wrong with it.
fn pool_name(
    v: &mut Validation,
    raw: &RawPool,
    at: &str,
    i: usize,
    first_of_name: &mut HashMap<String, usize>,
) -> Option<PoolName> {
    let Some(name) = raw.name.as_deref() else {
        v.error(ConfigPath::root(at), Reason::MissingName);
        return None;
    };
    if name.trim().is_empty() {
        v.error(ConfigPath::root(&format!("{at}.name")), Reason::EmptyName);
        return None;
    }
    let pool_name = PoolName(name.to_owned());
    if let Some(first) = first_of_name.get(name) {
        let path = ConfigPath {
            pool: Some(pool_name.clone()),
            path: format!("{at}.name"),
        };
        let reason = Reason::DuplicateName {
            name: name.to_owned(),
            first: format!("address-pools[{first}]"),
        };
        v.error(path, reason);
    } else {
        first_of_name.insert(name.to_owned(), i);
    }
    Some(pool_name)
}

/// One pool's own rules (not overlap with others). `path(".field")` is the
/// path of a field of this pool; `range_read(j, range, text)` is told of
/// every address entry that reads well. `None` if anything is wrong.
fn pool(
    v: &mut Validation,
    raw: RawPool,
    path: &dyn Fn(&str) -> ConfigPath,
    mut range_read: impl FnMut(usize, AddressRange, &str),
) -> Option<Pool> {
    let errors_before = v.errors.len();
    match raw.protocol.as_deref() {
        None => v.error(path(""), Reason::MissingProtocol),
        Some("layer2") => {}
        Some("bgp") => v.error(
            path(".protocol"),
            Reason::BgpNotSupported {
                remedy: "use protocol: layer2",
            },
        ),
        Some(other) => v.error(
            path(".protocol"),
            Reason::UnknownProtocol {
                protocol: other.to_owned(),
            },
        ),
    }
    v.refuse_bgp(
        raw.bgp_advertisements.as_ref(),
        path(".bgp-advertisements"),
        "remove bgp-advertisements",
    );

    let addresses = raw.addresses.unwrap_or_default();
    if addresses.is_empty() {
        v.error(path(".addresses"), Reason::NoAddresses);
    }
    let mut ranges = Vec::with_capacity(addresses.len());
    for (j, text) in addresses.iter().enumerate() {
        let at = path(&format!(".addresses[{j}]"));
        match AddressRange::parse(text) {
            Ok(parsed) => {
                if let Some(reason) = special_purpose(parsed.range, text.trim()) {
                    v.error(at, reason);
                    continue;
                }
                if parsed.host_bits_set {
                    let concern = Concern::HostBitsSet {
                        written: text.trim().to_owned(),
                        network: parsed.range.to_notation(),
                    };
                    v.warn(at, concern);
                }
                range_read(j, parsed.range, text.trim());
                ranges.push(parsed.range);
            }
            Err(e) => v.error(at, Reason::BadAddress(e)),
        }
    }

    let node_selectors = raw
        .node_selectors
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(k, s)| node_selector(v, s, &|f| path(&format!(".node-selectors[{k}]{f}"))))
        .collect();
    let interfaces = interfaces(v, raw.interfaces.unwrap_or_default(), path);
    let service_allocation = raw
        .service_allocation
        .map(|a| service_allocation(v, a, &|f| path(&format!(".service-allocation{f}"))));

    let pool = Pool {
        name: PoolName(raw.name.unwrap_or_default()),
        ranges,
        auto_assign: raw.auto_assign.unwrap_or(true),
        avoid_buggy_ips: raw.avoid_buggy_ips.unwrap_or(false),
        node_selectors,
        interfaces,
        service_allocation,
    };
    if pool.avoid_buggy_ips && !pool.ranges.is_empty() {
        if !pool.has_family(Family::V4) {
            v.warn(path(".avoid-buggy-ips"), Concern::AvoidBuggyIpsWithoutIpv4);
        } else if !pool.has_family(Family::V6) && pool.address_count(Family::V4) == 0 {
            v.warn(path(".avoid-buggy-ips"), Concern::NoUsableAddresses);
        }
    }
    (v.errors.len() == errors_before).then_some(pool)
}

/// Why a pool may not hold `range` (written as `text`), if it may not.
fn special_purpose(range: AddressRange, text: &str) -> Option<Reason> {
    if range.prefix_len() == Some(0) {
        return Some(Reason::WholeInternet {
            range: text.to_owned(),
            family: range.family(),
        });
    }
    SpecialPurpose::within(&range).map(|(special, shared)| Reason::SpecialPurpose {
        range: text.to_owned(),
        whole: range,
        special,
        shared,
    })
}

/// A pool's `service-allocation`; errors are recorded, bad entries dropped.
fn service_allocation(
    v: &mut Validation,
    raw: RawServiceAllocation,
    path: &dyn Fn(&str) -> ConfigPath,
) -> ServiceAllocation {
    let priority = match raw.priority {
        None => None,
        Some(0) => {
            v.warn(path(".priority"), Concern::PriorityZero);
            None
        }
        Some(priority) if priority < 0 => {
            v.error(path(".priority"), Reason::NegativePriority { priority });
            None
        }
        Some(priority) => match u32::try_from(priority) {
            Ok(p) => Some(p),
            Err(_) => {
                v.error(path(".priority"), Reason::PriorityTooLarge { priority });
                None
            }
        },
    };
    let mut namespaces: Vec<String> = Vec::new();
    for (k, name) in raw.namespaces.unwrap_or_default().into_iter().enumerate() {
        let at = path(&format!(".namespaces[{k}]"));
        if let Some(why) = dns_label_problem(&name) {
            v.error(at, Reason::BadNamespaceName { name, why });
        } else if namespaces.contains(&name) {
            v.error(at, Reason::DuplicateNamespace { name });
        } else {
            namespaces.push(name);
        }
    }
    let selectors = |v: &mut Validation, raw: Option<Vec<RawNodeSelector>>, field: &str| {
        raw.unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(k, s)| node_selector(v, s, &|f| path(&format!(".{field}[{k}]{f}"))))
            .collect()
    };
    let namespace_selectors = selectors(v, raw.namespace_selectors, "namespace-selectors");
    let service_selectors = selectors(v, raw.service_selectors, "service-selectors");
    ServiceAllocation {
        priority,
        namespaces,
        namespace_selectors,
        service_selectors,
    }
}

/// What Kubernetes objects to in a namespace name (an RFC 1123 label: 1 to
/// 63 lower-case letters, digits and `-`, starting and ending with a letter
/// or digit), if anything.
fn dns_label_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 63 {
        Some("Kubernetes allows at most 63 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Some("only lower-case letters, digits and '-' are allowed")
    } else if name.starts_with('-') || name.ends_with('-') {
        Some("it must start and end with a letter or digit")
    } else {
        None
    }
}

/// One node selector; errors are recorded, bad requirements dropped.
fn node_selector(
    v: &mut Validation,
    raw: RawNodeSelector,
    path: &dyn Fn(&str) -> ConfigPath,
) -> NodeSelector {
    let match_expressions = raw
        .match_expressions
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .filter_map(|(k, r)| requirement(v, r, path(&format!(".match-expressions[{k}]"))))
        .collect();
    NodeSelector {
        match_labels: raw.match_labels.unwrap_or_default(),
        match_expressions,
    }
}

/// One `match-expressions` entry, by Kubernetes' rules for label selectors.
fn requirement(
    v: &mut Validation,
    raw: RawRequirement,
    path: ConfigPath,
) -> Option<LabelRequirement> {
    let values = raw.values.unwrap_or_default();
    let field = |f: &str| ConfigPath {
        pool: path.pool.clone(),
        path: format!("{}{f}", path.path),
    };
    let key = match raw.key {
        Some(key) if !key.is_empty() => Some(key),
        _ => {
            v.error(path.clone(), Reason::SelectorWithoutKey);
            None
        }
    };
    let (name, needs_values) = match raw.operator.as_deref() {
        Some("In") => ("In", true),
        Some("NotIn") => ("NotIn", true),
        Some("Exists") => ("Exists", false),
        Some("DoesNotExist") => ("DoesNotExist", false),
        other => {
            let operator = other.unwrap_or_default().to_owned();
            v.error(field(".operator"), Reason::UnknownOperator { operator });
            return None;
        }
    };
    if needs_values && values.is_empty() {
        v.error(
            field(".values"),
            Reason::OperatorNeedsValues { operator: name },
        );
        return None;
    }
    if !needs_values && !values.is_empty() {
        v.error(
            field(".values"),
            Reason::OperatorTakesNoValues { operator: name },
        );
        return None;
    }
    let operator = match name {
        "In" => LabelOperator::In(values),
        "NotIn" => LabelOperator::NotIn(values),
        "Exists" => LabelOperator::Exists,
        _ => LabelOperator::DoesNotExist,
    };
    Some(LabelRequirement {
        key: key?,
        operator,
    })
}

/// The `interfaces` list: names Linux accepts, each once.
fn interfaces(
    v: &mut Validation,
    names: Vec<String>,
    path: &dyn Fn(&str) -> ConfigPath,
) -> Vec<String> {
    let mut kept: Vec<String> = Vec::with_capacity(names.len());
    for (k, name) in names.into_iter().enumerate() {
        let at = path(&format!(".interfaces[{k}]"));
        // Linux's rules (dev_valid_name): 1 to 15 bytes, not `.` or `..`,
        // no `/`, `:` or whitespace.
        let why = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > 15 {
            Some("Linux allows at most 15 bytes")
        } else if name == "." || name == ".." {
            Some("it is a directory name")
        } else if name.contains(['/', ':']) || name.contains(char::is_whitespace) {
            Some("it contains '/', ':' or whitespace")
        } else {
            None
        };
        if let Some(why) = why {
            v.error(at, Reason::BadInterfaceName { name, why });
        } else if kept.contains(&name) {
            v.warn(at, Concern::DuplicateInterface { name });
        } else {
            kept.push(name);
        }
    }
    kept
}

#[cfg(test)]
mod tests;
