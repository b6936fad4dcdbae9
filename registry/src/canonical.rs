//! Canonical JSON: object keys sorted by their UTF-8 bytes, no whitespace,
//! numbers as serde_json writes them (integers exactly, floats by the shortest
//! round-tripping form). The same value always gives the same bytes, which is
//! what signatures and hashes are computed over.

use serde_json::Value;

/// The canonical bytes of a JSON value.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write(value, &mut out);
    out
}

/// The canonical bytes of anything serialisable.
pub fn of<T: serde::Serialize>(value: &T) -> Vec<u8> {
    to_vec(&serde_json::to_value(value).expect("plain data serialises to JSON"))
}

fn write(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(v, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).expect("writing to a Vec");
                out.push(b':');
                write(v, out);
            }
            out.push(b'}');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("writing to a Vec"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_survive_a_round_trip_exactly() {
        // Metrics such as a validation accuracy of 14/15 as f32 widened to
        // f64: parsing must give back the same bits, or a manifest would
        // hash differently when it is read back and verified.
        for x in [
            0.9333333373069763f64,
            f64::from(14.0f32 / 15.0),
            0.10000000149011612,
            1e-300,
            123456.789e10,
        ] {
            let v = serde_json::json!({ "x": x });
            let text = String::from_utf8(of(&v)).unwrap();
            let back: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(back["x"].as_f64().unwrap().to_bits(), x.to_bits(), "{text}");
            assert_eq!(of(&back), of(&v));
        }
    }

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        let v: Value =
            serde_json::from_str(r#"{ "b": [1, 2.5, "x\n"], "a": {"d": null, "c": true} }"#)
                .unwrap();
        assert_eq!(
            String::from_utf8(to_vec(&v)).unwrap(),
            r#"{"a":{"c":true,"d":null},"b":[1,2.5,"x\n"]}"#
        );
    }
}
