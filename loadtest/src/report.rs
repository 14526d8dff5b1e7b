//! An ordered report tree, printed either as one JSON object or as a table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::ser::{Serialize, SerializeMap, Serializer};

pub enum V {
    U(u64),
    I(i64),
    F(f64),
    S(String),
    B(bool),
    O(Obj),
    /// A figure that has no value in this run (a percentile of no samples): `null` in JSON,
    /// `-` in the table, so that the report keeps one shape whatever happened.
    Null,
}

impl From<Option<f64>> for V {
    fn from(v: Option<f64>) -> V {
        v.map_or(V::Null, V::F)
    }
}

impl From<u64> for V {
    fn from(v: u64) -> V {
        V::U(v)
    }
}
impl From<i64> for V {
    fn from(v: i64) -> V {
        V::I(v)
    }
}
impl From<usize> for V {
    fn from(v: usize) -> V {
        V::U(v as u64)
    }
}
impl From<u32> for V {
    fn from(v: u32) -> V {
        V::U(v as u64)
    }
}
impl From<f64> for V {
    fn from(v: f64) -> V {
        V::F(v)
    }
}
impl From<&str> for V {
    fn from(v: &str) -> V {
        V::S(v.to_string())
    }
}
impl From<String> for V {
    fn from(v: String) -> V {
        V::S(v)
    }
}
impl From<bool> for V {
    fn from(v: bool) -> V {
        V::B(v)
    }
}
impl From<Obj> for V {
    fn from(v: Obj) -> V {
        V::O(v)
    }
}

/// Keys keep their insertion order in both outputs.
#[derive(Default)]
pub struct Obj(Vec<(String, V)>);

impl Obj {
    pub fn new() -> Obj {
        Obj(Vec::new())
    }

    pub fn put(&mut self, key: &str, v: impl Into<V>) {
        self.0.push((key.to_string(), v.into()));
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("report serialises")
    }

    pub fn to_table(&self) -> String {
        let mut out = String::new();
        table(self, 0, &mut out);
        out
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl Serialize for V {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            V::U(v) => s.serialize_u64(*v),
            V::I(v) => s.serialize_i64(*v),
            V::F(v) if v.is_finite() => s.serialize_f64(round3(*v)),
            V::F(_) => s.serialize_none(),
            V::S(v) => s.serialize_str(v),
            V::B(v) => s.serialize_bool(*v),
            V::O(o) => o.serialize(s),
            V::Null => s.serialize_none(),
        }
    }
}

impl Serialize for Obj {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

fn table(o: &Obj, indent: usize, out: &mut String) {
    let width = 34usize.saturating_sub(indent);
    for (k, v) in &o.0 {
        let pad = "";
        match v {
            V::O(inner) => {
                let _ = writeln!(out, "{pad:indent$}{k}:");
                table(inner, indent + 2, out);
            }
            V::U(x) => {
                let _ = writeln!(out, "{pad:indent$}{k:<width$} {x}");
            }
            V::I(x) => {
                let _ = writeln!(out, "{pad:indent$}{k:<width$} {x}");
            }
            V::F(x) => {
                let _ = writeln!(out, "{pad:indent$}{k:<width$} {}", fmt_f(*x));
            }
            V::S(x) => {
                let _ = writeln!(out, "{pad:indent$}{k:<width$} {x}");
            }
            V::B(x) => {
                let _ = writeln!(out, "{pad:indent$}{k:<width$} {x}");
            }
            V::Null => {
                let _ = writeln!(out, "{pad:indent$}{k:<width$} -");
            }
        }
    }
}

fn fmt_f(x: f64) -> String {
    if !x.is_finite() {
        "-".to_string()
    } else if x.abs() >= 1000.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

/// Summary of a nanosecond histogram, in microseconds; every figure is there (`null` when
/// the histogram is empty), so that scripts reading the JSON need no special case.
pub fn hist_us(h: &Histogram<u64>) -> Obj {
    summary(
        h,
        &[
            ("min", Figure::Min),
            ("mean", Figure::Mean),
            ("p50", Figure::Quantile(0.50)),
            ("p90", Figure::Quantile(0.90)),
            ("p99", Figure::Quantile(0.99)),
            ("p99_9", Figure::Quantile(0.999)),
            ("max", Figure::Max),
        ],
    )
}

/// Compact `p50/p99/max` summary (µs) for the fanout report.
pub fn hist_us_short(h: &Histogram<u64>) -> Obj {
    summary(
        h,
        &[
            ("p50", Figure::Quantile(0.50)),
            ("p99", Figure::Quantile(0.99)),
            ("max", Figure::Max),
        ],
    )
}

enum Figure {
    Min,
    Mean,
    Quantile(f64),
    Max,
}

fn summary(h: &Histogram<u64>, figures: &[(&str, Figure)]) -> Obj {
    let mut o = Obj::new();
    o.put("count", h.len());
    for (name, figure) in figures {
        let ns = (!h.is_empty()).then(|| match figure {
            Figure::Min => h.min() as f64,
            Figure::Mean => h.mean(),
            Figure::Quantile(q) => h.value_at_quantile(*q) as f64,
            Figure::Max => h.max() as f64,
        });
        o.put(name, ns.map(|ns| ns / 1000.0));
    }
    o
}

/// `{"200": n, "503": m}`.
pub fn status_obj(m: &BTreeMap<u16, u64>) -> Obj {
    let mut o = Obj::new();
    for (k, v) in m {
        o.put(&k.to_string(), *v);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_in_json_and_table() {
        let mut inner = Obj::new();
        inner.put("z", 1u64);
        inner.put("a", 0.12345);
        let mut o = Obj::new();
        o.put("mode", "load");
        o.put("inner", inner);
        o.put("nan", f64::NAN);
        assert_eq!(
            o.to_json(),
            r#"{"mode":"load","inner":{"z":1,"a":0.123},"nan":null}"#
        );
        let t = o.to_table();
        assert!(t.contains("inner:\n  z"));
    }

    #[test]
    fn an_empty_histogram_keeps_every_field_as_null() {
        let empty = Histogram::<u64>::new(3).unwrap();
        assert_eq!(
            hist_us(&empty).to_json(),
            r#"{"count":0,"min":null,"mean":null,"p50":null,"p90":null,"p99":null,"p99_9":null,"max":null}"#
        );
        assert_eq!(
            hist_us_short(&empty).to_json(),
            r#"{"count":0,"p50":null,"p99":null,"max":null}"#
        );
        assert!(hist_us(&empty).to_table().contains("p99 "));
    }
}
