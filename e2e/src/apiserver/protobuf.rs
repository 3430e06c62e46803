//! Just enough of the Kubernetes protobuf encoding to read what kubectl's typed commands send
//! (`kubectl create namespace|configmap|secret|serviceaccount|token`): the `k8s\0` envelope
//! (`runtime.Unknown`), ObjectMeta's name/generateName/namespace/labels/annotations/finalizers and
//! those kinds' own fields. Answers are always JSON, which those clients accept.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use serde_json::{Map, Value, json};

use super::status::ApiError;

const MAGIC: &[u8] = b"k8s\0";

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn bad(what: &str) -> ApiError {
    ApiError::bad_request(format!("error decoding the protobuf body: {what}"))
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, ApiError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos).ok_or_else(|| bad("truncated varint"))?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(bad("varint too long"))
}

/// The fields of one message, in order.
fn fields(buf: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, ApiError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let wire = match key & 7 {
            0 => Wire::Varint(varint(buf, &mut pos)?),
            1 | 5 => {
                pos += if key & 7 == 1 { 8 } else { 4 };
                Wire::Fixed
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).map_err(|_| bad("length"))?;
                let bytes = buf
                    .get(pos..pos + len)
                    .ok_or_else(|| bad("truncated field"))?;
                pos += len;
                Wire::Bytes(bytes)
            }
            _ => return Err(bad("unsupported wire type")),
        };
        out.push((key >> 3, wire));
    }
    Ok(out)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A `map<string, string|bytes>` entry: key 1, value 2.
fn map_entry(bytes: &[u8]) -> Result<(String, Vec<u8>), ApiError> {
    let mut key = String::new();
    let mut value = Vec::new();
    for (n, w) in fields(bytes)? {
        match (n, w) {
            (1, Wire::Bytes(b)) => key = text(b),
            (2, Wire::Bytes(b)) => value = b.to_vec(),
            _ => {}
        }
    }
    Ok((key, value))
}

fn object_meta(bytes: &[u8]) -> Result<Value, ApiError> {
    let mut meta = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    let mut finalizers = Vec::new();
    for (n, w) in fields(bytes)? {
        let Wire::Bytes(b) = w else { continue };
        match n {
            1..=3 if !b.is_empty() => {
                let key =
                    ["name", "generateName", "namespace"][usize::try_from(n - 1).unwrap_or(0)];
                meta.insert(key.into(), json!(text(b)));
            }
            11 | 12 => {
                let (k, v) = map_entry(b)?;
                let target = if n == 11 {
                    &mut labels
                } else {
                    &mut annotations
                };
                target.insert(k, json!(text(&v)));
            }
            14 => finalizers.push(json!(text(b))),
            _ => {}
        }
    }
    for (key, value) in [("labels", labels), ("annotations", annotations)] {
        if !value.is_empty() {
            meta.insert(key.into(), Value::Object(value));
        }
    }
    if !finalizers.is_empty() {
        meta.insert("finalizers".into(), Value::Array(finalizers));
    }
    Ok(Value::Object(meta))
}

fn token_request_spec(bytes: &[u8]) -> Result<Value, ApiError> {
    let mut spec = json!({ "audiences": [] });
    for (n, w) in fields(bytes)? {
        match (n, w) {
            (1, Wire::Bytes(b)) => {
                if let Some(a) = spec["audiences"].as_array_mut() {
                    a.push(json!(text(b)));
                }
            }
            (3, Wire::Bytes(b)) => {
                let mut bound = Map::new();
                for (m, v) in fields(b)? {
                    if let (1..=4, Wire::Bytes(s)) = (m, v)
                        && !s.is_empty()
                    {
                        let key = ["kind", "apiVersion", "name", "uid"]
                            [usize::try_from(m - 1).unwrap_or(0)];
                        bound.insert(key.into(), json!(text(s)));
                    }
                }
                spec["boundObjectRef"] = Value::Object(bound);
            }
            (4, Wire::Varint(v)) => spec["expirationSeconds"] = json!(v),
            _ => {}
        }
    }
    Ok(spec)
}

/// Decodes a `application/vnd.kubernetes.protobuf` body of one of the supported kinds to JSON.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing the k8s envelope"))?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (n, w) in fields(envelope)? {
        match (n, w) {
            (1, Wire::Bytes(b)) => {
                for (m, v) in fields(b)? {
                    match (m, v) {
                        (1, Wire::Bytes(s)) => api_version = text(s),
                        (2, Wire::Bytes(s)) => kind = text(s),
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let mut obj = json!({ "apiVersion": api_version, "kind": kind });
    let mut data = Map::new();
    let mut binary = Map::new();
    let mut string_data = Map::new();
    for (n, w) in fields(raw)? {
        match (kind.as_str(), n, w) {
            (_, 1, Wire::Bytes(b)) => obj["metadata"] = object_meta(b)?,
            ("ConfigMap", 2, Wire::Bytes(b)) => {
                let (k, v) = map_entry(b)?;
                data.insert(k, json!(text(&v)));
            }
            ("ConfigMap", 3, Wire::Bytes(b)) | ("Secret", 2, Wire::Bytes(b)) => {
                let (k, v) = map_entry(b)?;
                binary.insert(k, json!(STANDARD.encode(v)));
            }
            ("ConfigMap", 4, Wire::Varint(v)) | ("Secret", 5, Wire::Varint(v)) => {
                obj["immutable"] = json!(v != 0);
            }
            ("Secret", 3, Wire::Bytes(b)) if !b.is_empty() => obj["type"] = json!(text(b)),
            ("Secret", 4, Wire::Bytes(b)) => {
                let (k, v) = map_entry(b)?;
                string_data.insert(k, json!(text(&v)));
            }
            ("ServiceAccount", 4, Wire::Varint(v)) => {
                obj["automountServiceAccountToken"] = json!(v != 0);
            }
            ("TokenRequest", 2, Wire::Bytes(b)) => obj["spec"] = token_request_spec(b)?,
            ("Namespace" | "ConfigMap" | "Secret" | "ServiceAccount" | "TokenRequest", ..) => {}
            _ => {
                return Err(ApiError::unsupported_body(
                    "application/vnd.kubernetes.protobuf",
                ));
            }
        }
    }
    match kind.as_str() {
        "ConfigMap" => {
            obj["data"] = Value::Object(data);
            if !binary.is_empty() {
                obj["binaryData"] = Value::Object(binary);
            }
        }
        "Secret" => {
            obj["data"] = Value::Object(binary);
            if !string_data.is_empty() {
                obj["stringData"] = Value::Object(string_data);
            }
        }
        _ => {}
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `kubectl create configmap pbcm --from-literal=a=b --from-literal=cc=dd` sends.
    const CONFIG_MAP: &[u8] = b"k8s\0\x0a\x0f\x0a\x02v1\x12\x09ConfigMap\x12\x28\x0a\x14\x0a\x04pbcm\x12\x00\x1a\x00\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\x12\x06\x0a\x01a\x12\x01b\x12\x08\x0a\x02cc\x12\x02dd\x1a\x00\x22\x00";

    #[test]
    fn decodes_what_kubectl_create_sends() -> Result<(), ApiError> {
        let obj = decode(CONFIG_MAP)?;
        assert_eq!(
            obj,
            json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "pbcm" },
                "data": { "a": "b", "cc": "dd" } })
        );
        Ok(())
    }
}
