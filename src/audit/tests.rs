//! Unit tests of `src/audit.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn rendered(record: &Record<'_>, now: SystemTime) -> Vec<u8> {
    let mut line = Vec::new();
    render(record, now, &mut line);
    line
}

fn sample<'a>() -> Record<'a> {
    Record {
        listener: "ui",
        request_id: "r-1",
        client: Some(SocketAddr::from(([127, 0, 0, 1], 4000))),
        principal: Some("email:alice@example.com"),
        namespace: Some("orders\"x"),
        op: "decode",
        payloads: 2,
        bytes: 1830,
        status: 200,
        result: "ok",
        duration: Duration::from_micros(3100),
    }
}

#[test]
fn a_line_is_one_json_object_with_every_field() {
    let line = rendered(&sample(), SystemTime::UNIX_EPOCH);
    assert_eq!(line.last(), Some(&b'\n'));
    assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
    let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(value["time"], "1970-01-01T00:00:00.000Z");
    assert_eq!(value["listener"], "ui");
    assert_eq!(value["client"], "127.0.0.1:4000");
    assert_eq!(value["principal"], "email:alice@example.com");
    assert_eq!(value["namespace"], "orders\"x");
    assert_eq!(value["payloads"], 2);
    assert_eq!(value["bytes"], 1830);
    assert_eq!(value["status"], 200);
    assert_eq!(value["result"], "ok");
    assert_eq!(value["duration_ms"], 3.1);
}

#[test]
fn missing_principal_and_namespace_are_null() {
    let record = Record {
        principal: None,
        namespace: None,
        client: None,
        ..sample()
    };
    let value: serde_json::Value =
        serde_json::from_slice(&rendered(&record, SystemTime::UNIX_EPOCH)).unwrap();
    assert!(value["principal"].is_null());
    assert!(value["namespace"].is_null());
    assert!(value["client"].is_null());
}

#[test]
fn the_cached_second_follows_the_clock_both_ways() {
    let at = |millis: u64| {
        let mut out = Vec::new();
        write_time(
            SystemTime::UNIX_EPOCH + Duration::from_millis(millis),
            &mut out,
        );
        String::from_utf8(out).unwrap()
    };
    // 2024-02-29T23:59:59, then the next second (a new day and month), then back.
    let base = 1_709_251_199_000;
    assert_eq!(at(base + 1), "2024-02-29T23:59:59.001Z");
    assert_eq!(at(base + 999), "2024-02-29T23:59:59.999Z");
    assert_eq!(at(base + 1000), "2024-03-01T00:00:00.000Z");
    assert_eq!(at(base + 2), "2024-02-29T23:59:59.002Z");
    assert_eq!(at(base + 1000 + 86_400_000), "2024-03-02T00:00:00.000Z");
}

/// Known instants (checked against GNU `date -u`): the epoch, leap days (2000 and 2400 are
/// leap years, 2100 and 2200 are not), year and century boundaries, the 32-bit overflow of
/// 2038 and the last second of 9999.
const KNOWN: [(u64, &str); 24] = [
    (0, "1970-01-01T00:00:00"),
    (68_214_896, "1972-02-29T12:34:56"),
    (951_782_400, "2000-02-29T00:00:00"),
    (951_868_799, "2000-02-29T23:59:59"),
    (978_307_199, "2000-12-31T23:59:59"),
    (978_307_200, "2001-01-01T00:00:00"),
    (1_709_164_800, "2024-02-29T00:00:00"),
    (1_735_689_599, "2024-12-31T23:59:59"),
    (1_735_689_600, "2025-01-01T00:00:00"),
    (2_147_483_648, "2038-01-19T03:14:08"),
    (4_102_444_799, "2099-12-31T23:59:59"),
    (4_102_444_800, "2100-01-01T00:00:00"),
    (4_107_542_399, "2100-02-28T23:59:59"),
    (4_107_542_400, "2100-03-01T00:00:00"),
    (7_263_215_999, "2200-02-28T23:59:59"),
    (7_263_216_000, "2200-03-01T00:00:00"),
    (13_569_465_599, "2399-12-31T23:59:59"),
    (13_569_465_600, "2400-01-01T00:00:00"),
    (13_574_563_200, "2400-02-29T00:00:00"),
    (13_574_649_599, "2400-02-29T23:59:59"),
    (13_578_537_600, "2400-04-15T00:00:00"),
    (13_601_087_999, "2400-12-31T23:59:59"),
    (13_611_081_599, "2401-04-26T15:59:59"),
    (253_402_300_799, "9999-12-31T23:59:59"),
];

#[test]
fn times_at_known_instants() {
    for (second, expected) in KNOWN {
        let mut out = Vec::new();
        write_second(second, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), expected, "{second}");
        // Through the cache: a miss, then hits within the same second.
        for millis in [0, 7, 999] {
            let mut out = Vec::new();
            write_time(
                SystemTime::UNIX_EPOCH + Duration::from_millis(second * 1000 + millis),
                &mut out,
            );
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("{expected}.{millis:03}Z")
            );
        }
    }
}

#[test]
fn times_after_9999_are_clamped_to_its_last_second() {
    for second in [LAST_SECOND + 1, 1 << 40, u64::MAX] {
        let mut out = Vec::new();
        write_second(second, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "9999-12-31T23:59:59");
    }
}

#[test]
fn times_match_rfc3339_from_the_time_crate() {
    use time::format_description::well_known::Rfc3339;
    // A spread of instants up to 2400, read back as RFC 3339.
    let seconds = (0..20_000u64).map(|i| i * 678_901 + i % 86_400);
    for second in seconds {
        let millis = second % 1000;
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(second * 1000 + millis);
        let mut ours = Vec::new();
        write_time(now, &mut ours);
        let theirs = time::OffsetDateTime::from(now)
            .replace_nanosecond(u32::try_from(millis * 1_000_000).unwrap())
            .unwrap()
            .format(&Rfc3339)
            .unwrap();
        // `time` drops a zero fraction and trailing zeros; compare as instants.
        let parsed =
            time::OffsetDateTime::parse(std::str::from_utf8(&ours).unwrap(), &Rfc3339).unwrap();
        assert_eq!(
            parsed,
            time::OffsetDateTime::parse(&theirs, &Rfc3339).unwrap(),
            "{}",
            String::from_utf8_lossy(&ours)
        );
        assert_eq!(ours.len(), 24, "{}", String::from_utf8_lossy(&ours));
    }
}

#[test]
fn durations_and_addresses_render_exactly() {
    let record = Record {
        duration: Duration::from_nanos(12_345_678_901),
        client: Some("[2001:db8::1]:443".parse().unwrap()),
        payloads: 0,
        bytes: usize::MAX,
        ..sample()
    };
    let line = String::from_utf8(rendered(&record, SystemTime::UNIX_EPOCH)).unwrap();
    assert!(line.contains(r#""duration_ms":12345.678}"#), "{line}");
    assert!(line.contains(r#""client":"[2001:db8::1]:443","#), "{line}");
    assert!(line.contains(r#""payloads":0,"#), "{line}");
    assert!(
        line.contains(&format!(r#""bytes":{},"#, usize::MAX)),
        "{line}"
    );
    let record = Record {
        duration: Duration::from_micros(7),
        client: Some("10.0.0.7:51234".parse().unwrap()),
        ..sample()
    };
    let line = String::from_utf8(rendered(&record, SystemTime::UNIX_EPOCH)).unwrap();
    assert!(line.contains(r#""duration_ms":0.007}"#), "{line}");
    assert!(line.contains(r#""client":"10.0.0.7:51234","#), "{line}");
}

#[test]
fn lines_from_many_threads_arrive_whole_and_all_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = Arc::new(AuditLog::open(&AuditOutput::File(path.clone())).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|thread| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..5_000 {
                    let id = format!("{thread}-{i}");
                    // As the request pipeline does: no request is served while the log has
                    // no room.
                    while !log.has_room() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    log.record(&Record {
                        request_id: &id,
                        ..sample()
                    });
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    log.close();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut ids = std::collections::HashSet::new();
    let mut last_per_thread = [-1i64; 8];
    for line in text.lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = value["request_id"].as_str().unwrap().to_owned();
        let (thread, i) = id.split_once('-').unwrap();
        let (thread, i): (usize, i64) = (thread.parse().unwrap(), i.parse().unwrap());
        // Each thread's lines stay in the order it recorded them.
        assert!(
            i > last_per_thread[thread],
            "{id} after {}",
            last_per_thread[thread]
        );
        last_per_thread[thread] = i;
        assert!(ids.insert(id));
    }
    assert_eq!(ids.len(), 40_000);
    // After close, a line is written at once by the caller.
    log.record(&Record {
        request_id: "late",
        ..sample()
    });
    assert!(std::fs::read_to_string(&path).unwrap().contains("\"late\""));
    assert_eq!(log.dropped(), 0);
}

#[test]
fn request_ids_are_kept_when_sane_and_minted_otherwise() {
    assert_eq!(request_id(Some("abc-123")), "abc-123");
    let minted = request_id(Some("has space"));
    assert_eq!(minted.len(), 32);
    assert!(minted.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(request_id(None).len(), 32);
    assert_eq!(request_id(Some(&"x".repeat(129))).len(), 32);
    assert_ne!(request_id(None), request_id(None));
    // The process's prefix, then the counter.
    let (first, second) = (request_id(None), request_id(None));
    assert_eq!(first[..16], second[..16]);
    let count = |id: &str| u64::from_str_radix(&id[16..], 16).unwrap();
    // Other tests may mint ids between the two calls.
    assert!(count(&second) > count(&first));
}

#[test]
fn a_file_output_is_private_and_appended() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    for _ in 0..2 {
        let log = AuditLog::open(&AuditOutput::File(path.clone())).unwrap();
        log.record(&sample());
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 2);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
// The writer is a thread outside any runtime: the wall clock is the one to time it by.
#[allow(clippy::disallowed_methods)]
fn a_stalled_output_never_blocks_a_caller_and_bounds_what_it_buffers() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("audit.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // A reader that is open but never reads: the pipe fills and the writer thread stalls.
    let reader = std::thread::spawn({
        let fifo = fifo.clone();
        move || std::fs::File::open(fifo).unwrap()
    });
    let log = AuditLog::open(&AuditOutput::File(fifo)).unwrap();
    let mut reader = reader.join().unwrap();
    assert!(log.has_room());
    let started = std::time::Instant::now();
    let mut recorded = 0u64;
    while log.dropped() == 0 {
        log.record(&sample());
        recorded += 1;
        assert!(recorded < 1_000_000, "nothing was ever dropped");
    }
    // Tens of thousands of lines against a stalled output, none of them waited.
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(!log.has_room(), "a stalled output still admits requests");
    let line = rendered(&sample(), SystemTime::UNIX_EPOCH).len() as u64;
    assert!(
        recorded * line >= HARD_LIMIT as u64,
        "dropped before the hard limit"
    );
    // The reader drains: room again, and what was buffered arrives whole.
    let drain = std::thread::spawn(move || {
        let mut text = Vec::new();
        reader.read_to_end(&mut text).unwrap();
        text
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !log.has_room() {
        assert!(
            std::time::Instant::now() < deadline,
            "no room after draining"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    log.close();
    drop(log);
    let text = drain.join().unwrap();
    let lines = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count() as u64;
    assert_eq!(
        lines + 1,
        recorded,
        "every line not counted as dropped arrives"
    );
}
