//! sovra's JSONL job format: one job per line, a JSON object (`docs/sim.md` specifies it).
//!
//! ```json
//! {"id": "train-17", "tenant": "acme", "submit_s": 3600, "duration_s": 7200,
//!  "gpus": 8, "members": 4, "cpu_milli": 32000, "memory_mib": 262144,
//!  "model": ["H100"], "jurisdictions": ["JP", "SG"], "priority": 0}
//! ```
//!
//! `id` (string or non-negative integer, unique), `submit_s` and `duration_s` (seconds,
//! fractions allowed) are required. `tenant` defaults to `default`; a job asks for `gpus`
//! whole GPUs (default 0) or a `gpu_milli` share of one GPU (1..=1000, 1000 being one whole
//! GPU), not both; `members` > 1 makes a gang of whole-GPU members, all or nothing; `cpu_milli`
//! and `memory_mib` (per member) default to 0; `model` (a string or a list) restricts the GPU
//! model; `jurisdictions` narrows where the job may run (the scenario's tenant settings apply
//! too); `priority` defaults to 0. Blank lines are skipped. Unknown fields are errors, so a
//! typo does not silently change a job. Every error is `file:line: field: why`.

use std::collections::HashMap;

use serde_json::{Map, Value};
use sovra_fabric::topology::GPUS_PER_NODE_MAX;
use sovra_fabric::Jurisdiction;
use sovra_scheduler::core::job::{GpuRequest, MEMBERS_MAX, NAME_LEN_MAX};

use crate::loader::LoadError;
use crate::trace::{seconds_to_ms, TraceJob};

/// The fields a job line may have.
pub const FIELDS: [&str; 12] = [
    "id",
    "tenant",
    "submit_s",
    "duration_s",
    "gpus",
    "gpu_milli",
    "members",
    "cpu_milli",
    "memory_mib",
    "model",
    "jurisdictions",
    "priority",
];

/// One line's fields, with errors that name the line.
struct Line<'a> {
    file: &'a str,
    n: usize,
    object: Map<String, Value>,
}

impl Line<'_> {
    fn error(&self, field: &str, why: impl std::fmt::Display) -> LoadError {
        LoadError {
            file: self.file.to_string(),
            line: self.n,
            message: format!("{field}: {why}"),
        }
    }

    fn get(&self, field: &str) -> Option<&Value> {
        self.object.get(field).filter(|v| !v.is_null())
    }

    fn uint(&self, field: &str, default: u64, max: u64) -> Result<u64, LoadError> {
        match self.get(field) {
            None => Ok(default),
            Some(v) => match v.as_u64() {
                Some(x) if x <= max => Ok(x),
                Some(x) => Err(self.error(field, format!("{x} is above the maximum {max}"))),
                None => Err(self.error(field, format!("expected a non-negative integer, got {v}"))),
            },
        }
    }

    fn seconds(&self, field: &str) -> Result<u64, LoadError> {
        let v = self
            .get(field)
            .ok_or_else(|| self.error(field, "missing"))?;
        v.as_f64()
            .and_then(seconds_to_ms)
            .ok_or_else(|| self.error(field, format!("expected seconds (a number >= 0), got {v}")))
    }

    fn strings(&self, field: &str) -> Result<Vec<String>, LoadError> {
        let bad = |v: &Value| {
            self.error(
                field,
                format!("expected a string or a list of them, got {v}"),
            )
        };
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| i.as_str().map(str::to_string).ok_or_else(|| bad(i)))
                .collect(),
            Some(v) => Err(bad(v)),
        }
    }
}

/// Parses a JSONL job file.
pub fn parse_jsonl(file: &str, text: &str) -> Result<Vec<TraceJob>, LoadError> {
    let mut jobs = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let object = match serde_json::from_str::<Value>(raw) {
            Ok(Value::Object(object)) => object,
            Ok(_) => {
                return Err(LoadError {
                    file: file.to_string(),
                    line: n,
                    message: "json: expected one object per line".into(),
                })
            }
            Err(e) => {
                let message = e.to_string();
                let message = message
                    .rsplit_once(" at line ")
                    .map_or(message.as_str(), |(m, _)| m);
                return Err(LoadError {
                    file: file.to_string(),
                    line: n,
                    message: format!("json: {message} (column {})", e.column()),
                });
            }
        };
        let line = Line { file, n, object };
        let job = parse_job(&line)?;
        if let Some(first) = seen.insert(job.name.clone(), n) {
            return Err(line.error(
                "id",
                format!("duplicate job {:?} (first on line {first})", job.name),
            ));
        }
        jobs.push(job);
    }
    Ok(jobs)
}

fn parse_job(line: &Line<'_>) -> Result<TraceJob, LoadError> {
    if let Some(unknown) = line.object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(line.error(
            unknown,
            format!("unknown field (expected one of {})", FIELDS.join(", ")),
        ));
    }
    let name = match line.get("id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(x)) if x.is_u64() => x.to_string(),
        Some(v) => {
            return Err(line.error(
                "id",
                format!("expected a non-empty string or a non-negative integer, got {v}"),
            ))
        }
        None => return Err(line.error("id", "missing")),
    };
    if name.len() > NAME_LEN_MAX || name.chars().any(char::is_control) {
        return Err(line.error(
            "id",
            format!("at most {NAME_LEN_MAX} bytes, no control characters"),
        ));
    }
    let tenant = match line.get("tenant") {
        None => "default".to_string(),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(v) => {
            return Err(line.error("tenant", format!("expected a non-empty string, got {v}")))
        }
    };
    let submit_ms = line.seconds("submit_s")?;
    let duration_ms = line.seconds("duration_s")?;
    let whole = line.uint("gpus", 0, GPUS_PER_NODE_MAX as u64)? as u32;
    let milli = line.uint("gpu_milli", 0, 1_000)? as u32;
    if line.get("gpu_milli").is_some() && milli == 0 {
        return Err(line.error("gpu_milli", "must be 1..=1000"));
    }
    let gpus = match (whole, milli) {
        (0, 0) => GpuRequest::None,
        (0, 1_000) => GpuRequest::Whole(1),
        (0, m) => GpuRequest::Milli(m),
        (k, 0) => GpuRequest::Whole(k),
        _ => return Err(line.error("gpu_milli", "give gpus (whole gpus) or gpu_milli, not both")),
    };
    let members = line.uint("members", 1, MEMBERS_MAX as u64)? as u32;
    if members == 0 {
        return Err(line.error("members", "must be at least 1"));
    }
    if members > 1 && !matches!(gpus, GpuRequest::Whole(_)) {
        return Err(line.error("members", "gang members take whole gpus: set gpus"));
    }
    let jurisdictions = match line.get("jurisdictions") {
        None => None,
        Some(_) => Some(
            line.strings("jurisdictions")?
                .iter()
                .map(|j| Jurisdiction::parse(j).map_err(|e| line.error("jurisdictions", e)))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(TraceJob {
        name,
        tenant,
        submit_ms,
        duration_ms,
        priority: line.uint("priority", 0, u32::MAX as u64)? as u32,
        cpu_milli: line.uint("cpu_milli", 0, u64::MAX)?,
        memory_mib: line.uint("memory_mib", 0, u64::MAX)?,
        gpus,
        members,
        gpu_models: line.strings("model")?,
        jurisdictions,
        line: line.n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_with_defaults() {
        let text = r#"{"id": "a", "tenant": "acme", "submit_s": 1.5, "duration_s": 60, "gpus": 8, "members": 2, "model": "H100", "jurisdictions": ["jp", "SG"]}

{"id": 7, "submit_s": 0, "duration_s": 0.25, "gpu_milli": 250, "cpu_milli": 4000, "memory_mib": 1024, "priority": 3}
{"id": "c", "submit_s": 2, "duration_s": 1, "gpu_milli": 1000, "jurisdictions": null}
"#;
        let jobs = parse_jsonl("jobs.jsonl", text).unwrap();
        assert_eq!(jobs.len(), 3);
        let a = &jobs[0];
        assert_eq!(
            (
                a.name.as_str(),
                a.tenant.as_str(),
                a.submit_ms,
                a.duration_ms
            ),
            ("a", "acme", 1_500, 60_000)
        );
        assert_eq!((a.members, a.gpus.clone()), (2, GpuRequest::Whole(8)));
        assert_eq!(a.gpu_models, ["H100"]);
        let codes: Vec<&str> = a
            .jurisdictions
            .as_ref()
            .unwrap()
            .iter()
            .map(|j| j.as_str())
            .collect();
        assert_eq!(codes, ["JP", "SG"]);
        let b = &jobs[1];
        assert_eq!(
            (b.name.as_str(), b.tenant.as_str(), b.line),
            ("7", "default", 3)
        );
        assert_eq!(
            (b.gpus.clone(), b.cpu_milli, b.memory_mib, b.priority),
            (GpuRequest::Milli(250), 4_000, 1_024, 3)
        );
        assert_eq!(b.duration_ms, 250);
        assert_eq!(
            (jobs[2].gpus.clone(), jobs[2].jurisdictions.clone()),
            (GpuRequest::Whole(1), None)
        );
    }

    #[test]
    fn malformed_lines_name_file_line_and_field() {
        let err = |line: &str| {
            let text = format!("{{\"id\": \"ok\", \"submit_s\": 0, \"duration_s\": 1}}\n{line}\n");
            parse_jsonl("jobs.jsonl", &text).unwrap_err().to_string()
        };
        let cases = [
            (r#"{"id": "x", "submit_s": 0"#, "jobs.jsonl:2: json: EOF while parsing an object (column 25)"),
            (r#"[1, 2]"#, "jobs.jsonl:2: json: expected one object per line"),
            (r#"{"id": "x", "duration_s": 1}"#, "jobs.jsonl:2: submit_s: missing"),
            (r#"{"id": "x", "submit_s": -1, "duration_s": 1}"#, "jobs.jsonl:2: submit_s: expected seconds (a number >= 0), got -1"),
            (r#"{"id": "x", "submit_s": 0, "duration_s": "1h"}"#, "jobs.jsonl:2: duration_s: expected seconds (a number >= 0), got \"1h\""),
            (r#"{"id": "x", "submit_s": 0, "duration_s": 1, "gpus": "two"}"#, "jobs.jsonl:2: gpus: expected a non-negative integer, got \"two\""),
            (r#"{"id": "x", "submit_s": 0, "duration_s": 1, "gpus": 40}"#, "jobs.jsonl:2: gpus: 40 is above the maximum 32"),
            (r#"{"id": "x", "submit_s": 0, "duration_s": 1, "gpus": 1, "gpu_milli": 500}"#, "jobs.jsonl:2: gpu_milli: give gpus (whole gpus) or gpu_milli, not both"),
            (r#"{"id": "x", "submit_s": 0, "duration_s": 1, "gpu_milli": 0}"#, "jobs.jsonl:2: gpu_milli: must be 1..=1000"),
            (r#"{"id": "x", "submit_s": 0, "duration_s": 1, "members": 4}"#, "jobs.jsonl:2: members: gang members take whole gpus: set gpus"),
            (r#"{"id": "x", "submit_s": 0, "duration_s": 1, "jurisdictions": ["J P"]}"#, "jobs.jsonl:2: jurisdictions: invalid jurisdiction \"J P\": use letters, digits and '-', starting with a letter"),
            (r#"{"id": "x", "submit_s": 0, "duration_s": 1, "model": [1]}"#, "jobs.jsonl:2: model: expected a string or a list of them, got 1"),
            (r#"{"id": "x", "submit_s": 0, "duration_s": 1, "gpu": 1}"#, "jobs.jsonl:2: gpu: unknown field (expected one of id, tenant, submit_s, duration_s, gpus, gpu_milli, members, cpu_milli, memory_mib, model, jurisdictions, priority)"),
            (r#"{"id": "", "submit_s": 0, "duration_s": 1}"#, "jobs.jsonl:2: id: expected a non-empty string or a non-negative integer, got \"\""),
            (r#"{"id": "ok", "submit_s": 0, "duration_s": 1}"#, "jobs.jsonl:2: id: duplicate job \"ok\" (first on line 1)"),
        ];
        for (line, expect) in cases {
            assert_eq!(err(line), expect, "{line}");
        }
    }
}
