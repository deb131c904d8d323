//! Bounds what reading a config may cost, whatever the text. A YAML alias
//! (`*name`) stands for a whole copy of what it names, so a small text can
//! expand to gigabytes once read into values; [`check`] walks the text once
//! without copying anything and refuses it before any value is built when it
//! is too long, expands too far or holds too many values. Everything read
//! after it passes is bounded by these limits.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};

/// The longest config text read. Kubernetes stores at most 1 MiB in a
/// ConfigMap, so no ConfigMap holds a longer one.
pub const MAX_TEXT_BYTES: usize = 1 << 20;

/// The most text the values may hold once every alias is expanded. Without
/// aliases a text's values hold fewer bytes than the text, so this only ever
/// refuses aliases that multiply the text.
pub const MAX_EXPANDED_BYTES: usize = 2 * MAX_TEXT_BYTES;

/// The most values (scalars, lists, maps; an alias counts as a copy of what
/// it names) a config may hold: a thousand pools of a hundred fields each.
pub const MAX_VALUES: usize = 100_000;

/// Which bound a text broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Longer than [`MAX_TEXT_BYTES`].
    Text {
        /// Its length in bytes.
        bytes: usize,
    },
    /// Its values hold more than [`MAX_EXPANDED_BYTES`].
    Expanded,
    /// More than [`MAX_VALUES`] values.
    Values,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Text { bytes } => write!(
                f,
                "the config is {bytes} bytes long; ferrolb reads at most {MAX_TEXT_BYTES} (1 MiB, as much as a ConfigMap holds)"
            ),
            Limit::Expanded => write!(
                f,
                "the config expands to more than {MAX_EXPANDED_BYTES} bytes (2 MiB) once its YAML aliases (*name) are replaced by what they name; write the values out instead of aliasing them"
            ),
            Limit::Values => write!(
                f,
                "the config holds more than {MAX_VALUES} values, counting each YAML alias (*name) as a copy of what it names"
            ),
        }
    }
}

/// Refuses `text` if reading it would cost more than the bounds allow. Its
/// cost is linear in the text's length: no value is built and an alias is
/// only followed while the budget lasts. A text that is not YAML passes: the
/// reader that follows reports where it breaks.
pub fn check(text: &str) -> Result<(), Limit> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(Limit::Text { bytes: text.len() });
    }
    let spent = Spent::default();
    let walked = serde_yaml::Deserializer::from_str(text)
        .try_for_each(|document| Walk(&spent).deserialize(document).map(|_| ()));
    match (walked, spent.exceeded.get()) {
        (_, Some(limit)) => Err(limit),
        // Not YAML, or two documents: for the reader to explain.
        (Err(_), None) | (Ok(()), None) => Ok(()),
    }
}

/// What a walk has read so far.
#[derive(Default)]
struct Spent {
    bytes: Cell<usize>,
    values: Cell<usize>,
    exceeded: Cell<Option<Limit>>,
}

impl Spent {
    /// Counts one value holding `bytes` of text; an error once over budget.
    fn value<E: de::Error>(&self, bytes: usize) -> Result<(), E> {
        self.bytes.set(self.bytes.get().saturating_add(bytes));
        self.values.set(self.values.get() + 1);
        let exceeded = if self.bytes.get() > MAX_EXPANDED_BYTES {
            Some(Limit::Expanded)
        } else if self.values.get() > MAX_VALUES {
            Some(Limit::Values)
        } else {
            None
        };
        match exceeded {
            Some(limit) => {
                self.exceeded.set(Some(limit));
                Err(E::custom(limit))
            }
            None => Ok(()),
        }
    }
}

/// Walks one value, counting it and everything in it, keeping nothing.
#[derive(Clone, Copy)]
struct Walk<'a>(&'a Spent);

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.0.value(0)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.0.value(0)
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.0.value(0)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.0.value(0)
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.0.value(0)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.0.value(0)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.0.value(v.len())
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<(), E> {
        self.0.value(v.len())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.value(0)
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.0.value(0)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.value(0)?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.value(0)?;
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }

    /// A tagged value (`!name value`): the tag, then the value.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        let ((), variant) = data.variant_seed(self)?;
        de::VariantAccess::newtype_variant_seed(variant, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A text aliasing one `scalar_bytes`-long scalar `copies` times.
    fn alias_bomb(scalar_bytes: usize, copies: usize) -> String {
        let mut text = format!("big: &big {}\ncopies:\n", "x".repeat(scalar_bytes));
        for _ in 0..copies {
            text.push_str("- *big\n");
        }
        text
    }

    /// Nested aliases: each level lists the one before ten times.
    fn laughs(levels: usize) -> String {
        let mut text = "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n".to_owned();
        for i in 1..levels {
            let p = i - 1;
            text.push_str(&format!(
                "l{i}: &l{i} [*l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}]\n"
            ));
        }
        text
    }

    #[test]
    fn aliases_that_multiply_a_scalar_are_refused() {
        assert_eq!(check(&alias_bomb(100_000, 3_000)), Err(Limit::Expanded));
    }

    #[test]
    fn nested_aliases_are_refused_by_count_before_they_expand() {
        assert_eq!(check(&laughs(9)), Err(Limit::Values));
    }

    #[test]
    fn a_walk_stops_as_soon_as_the_budget_is_spent() {
        // A billion-laughs text of 10^12 values: were the walk to follow
        // every alias this test would not finish.
        let spent = Spent::default();
        let text = laughs(12);
        let _ = serde_yaml::Deserializer::from_str(&text)
            .try_for_each(|d| Walk(&spent).deserialize(d).map(|_| ()));
        assert_eq!(spent.values.get(), MAX_VALUES + 1);
    }

    #[test]
    fn texts_longer_than_a_configmap_holds_are_refused() {
        let text = format!("# {}\n", "x".repeat(MAX_TEXT_BYTES));
        assert_eq!(
            check(&text),
            Err(Limit::Text {
                bytes: MAX_TEXT_BYTES + 3
            })
        );
    }

    #[test]
    fn modest_aliases_and_large_plain_configs_pass() {
        assert_eq!(check(&alias_bomb(1_000, 100)), Ok(()));
        let mut pools = "address-pools:\n".to_owned();
        for i in 0..5_000 {
            pools.push_str(&format!(
                "- {{name: p{i}, protocol: layer2, addresses: [198.51.100.0/24]}}\n"
            ));
        }
        assert_eq!(check(&pools), Ok(()));
        assert_eq!(check("address-pools: [unclosed"), Ok(()));
    }
}
