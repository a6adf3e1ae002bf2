//! `medico-cli serve` attacked as a hostile or clumsy client would (issue 28's defects D1–D9, C1–C7 and C4),
//! against the real server on loopback, each attack small and bounded in time: every answer is a clean 4xx
//! in FastAPI's shape (or the documented bound), the server never aborts or panics, its peak memory stays
//! under 1 GB with the default limits, and a click is answered while another client walks a volume. The
//! slow attacks (slowloris at scale, the soak) are `scripts/serve_attacks.py`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::Value;

use crate::serve_cli::{head, http, multipart, Server};

/// The server's peak resident memory since the last [`reset_peak`], MB.
fn peak_mb(server: &Server) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

/// Starts a new peak-memory measurement (Linux: `5` to `clear_refs` resets the high-water mark).
fn reset_peak(server: &Server) {
    std::fs::write(format!("/proc/{}/clear_refs", server.child.id()), "5").unwrap();
}

/// The status and `detail` of a JSON error answer (a panic when the answer is not FastAPI's shape).
fn detail((status, body): (u16, String)) -> (u16, String) {
    let json: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{status}: not JSON {body:?}: {e}"));
    let text = json["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("{status}: no detail in {body}"));
    (status, text.to_string())
}

/// A NIfTI-1 header (352 bytes: header and an empty extension flag) of a `dims` volume of `datatype`.
pub(crate) fn nifti_header(dims: [i16; 3], datatype: i16, bitpix: i16) -> Vec<u8> {
    let mut h = vec![0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    for (i, d) in [3i16, dims[0], dims[1], dims[2], 1, 1, 1, 1].iter().enumerate() {
        h[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    h[70..72].copy_from_slice(&datatype.to_le_bytes());
    h[72..74].copy_from_slice(&bitpix.to_le_bytes());
    for i in 0..8 {
        h[76 + 4 * i..80 + 4 * i].copy_from_slice(&1f32.to_le_bytes());
    }
    h[108..112].copy_from_slice(&352f32.to_le_bytes());
    h[344..348].copy_from_slice(b"n+1\0");
    h
}

/// A float32 NIfTI-1 file (`.nii`) of `dims` with `value(i, j, k)`.
fn nifti_f32(dims: [usize; 3], value: impl Fn(usize, usize, usize) -> f32) -> Vec<u8> {
    let mut bytes = nifti_header([dims[0] as i16, dims[1] as i16, dims[2] as i16], 16, 32);
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                bytes.extend_from_slice(&value(i, j, k).to_le_bytes());
            }
        }
    }
    bytes
}

/// Gzip members: `first` compressed, then `repeat` members each inflating to 16 MB of zeros (one member
/// compressed once and repeated: ~16 kB each).
fn gzip_members(first: &[u8], repeat: usize) -> Vec<u8> {
    let member = |data: &[u8]| {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    };
    let zeros = member(&vec![0u8; 16 << 20]);
    let mut out = member(first);
    for _ in 0..repeat {
        out.extend_from_slice(&zeros);
    }
    out
}

/// `PUT /session/` of `content` as `name`; the status and body.
fn upload(server: &Server, name: &str, content: &[u8], query: &str) -> (u16, String) {
    let (ct, body) = multipart("files", name, content, None);
    http(
        server.port,
        &head("PUT", &format!("/session/{query}"), None, &ct, body.len()),
        &body,
        false,
    )
}

/// A session on `content`; its id.
fn session(server: &Server, name: &str, content: &[u8]) -> String {
    let (status, body) = upload(server, name, content, "");
    assert_eq!(status, 200, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    json["session_id"].as_str().unwrap().to_string()
}

/// `POST /infer/{model}?session_id=..&output=json` with `params`; the status and body.
fn infer(server: &Server, model: &str, id: &str, params: &str) -> (u16, String) {
    let (ct, body) = multipart("label", "x.bin", b"", Some(params));
    let path = format!("/infer/{model}?session_id={id}&output=json");
    http(server.port, &head("POST", &path, None, &ct, body.len()), &body, false)
}

#[test]
fn uploads_declaring_more_than_the_limits_are_refused_before_anything_is_decoded() {
    let server = Server::start(&["--quiet"]);
    // D1: 2^31 uint8 voxels declared by a single-member .nii.gz (the data: 2 GB of zeros in ~2 MB).
    let huge = {
        let mut file = nifti_header([2048, 1024, 1024], 2, 8);
        file.extend(std::iter::repeat_n(0u8, 1 << 20));
        gzip_members(&file, 0)
    };
    // D1: 256 Mi uint8 voxels, within the old 8-bytes-per-voxel allowance, as a multi-member .nii.gz.
    let members = gzip_members(&nifti_header([1024, 1024, 256], 2, 8), 16);
    // D1: a gzip NRRD of 1024^3 voxels whose body is 64 gzip members of zeros (~1 MB).
    let nrrd = {
        let mut file = b"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 1024 1024 1024\nencoding: gzip\n\n".to_vec();
        file.extend_from_slice(&gzip_members(&[0u8; 16], 64));
        file
    };
    for (name, content) in [
        ("huge.nii.gz", &huge),
        ("members.nii.gz", &members),
        ("big.nrrd", &nrrd),
    ] {
        reset_peak(&server);
        let start = Instant::now();
        let (status, message) = detail(upload(&server, name, content, ""));
        let (seconds, peak) = (start.elapsed().as_secs_f64(), peak_mb(&server));
        println!(
            "{name} ({} kB): {status} in {seconds:.2} s, peak {peak:.0} MB: {message}",
            content.len() >> 10
        );
        assert_eq!(status, 413, "{name}: {message}");
        assert!(message.contains(name), "{name}: {message}");
        assert!(
            !message.contains("/tmp") && !message.contains("medico-session"),
            "{message}"
        );
        assert!(peak < 1024.0, "{name}: peak {peak} MB");
        assert!(seconds < 10.0, "{name}: {seconds} s");
    }
    // C2: a zip bomb (64 MB of zeros declared in the zip's directory, ~64 kB) with --max-megavoxels 4.
    let small = Server::start(&["--quiet", "--max-megavoxels", "4"]);
    let bomb = {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("series/1.dcm", options).unwrap();
        zip.write_all(&vec![0u8; 64 << 20]).unwrap();
        zip.finish().unwrap().into_inner()
    };
    let (status, message) = detail(upload(&small, "series.zip", &bomb, ""));
    assert_eq!(status, 413, "{message}");
    assert!(
        message.contains("series.zip") && message.contains("unpacks"),
        "{message}"
    );
    // The server is fine afterwards: the demo volume still opens.
    let volume = std::fs::read(crate::serve_cli::volume_path()).unwrap();
    session(&server, "mni.nii.gz", &volume);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn clicks_expiry_slices_labels_and_aspect_ratios_from_clients_get_a_4xx_or_an_answer() {
    let server = Server::start(&["--quiet"]);
    let cube = nifti_f32([32, 32, 8], |i, j, _| {
        if (8..24).contains(&i) && (8..24).contains(&j) {
            100.0
        } else {
            0.0
        }
    });
    let id = session(&server, "cube.nii", &cube);

    // D2: 10,000 clicks in one request (a 220 kB field).
    let clicks: Vec<String> = (0..10_000)
        .map(|n| format!("[{}, {}, 3]", n % 32, (n / 32) % 32))
        .collect();
    let params = format!(r#"{{"foreground": [{}]}}"#, clicks.join(","));
    reset_peak(&server);
    let (status, message) = detail(infer(&server, "medico-tiny", &id, &params));
    assert_eq!(status, 422, "{message}");
    assert!(message.contains("10000 clicks") && message.contains("256"), "{message}");
    assert!(peak_mb(&server) < 1024.0);

    // C1: text fields: `params` over 1 MB is refused; 4 MB of other fields are read past, not kept.
    let padded = format!(
        r#"{{"foreground": [[16, 16, 3]], "pad": "{}"}}"#,
        "x".repeat(1100 << 10)
    );
    let (status, message) = detail(infer(&server, "medico-tiny", &id, &padded));
    assert_eq!(status, 413, "{message}");
    assert!(message.contains("text fields"), "{message}");
    let mut body = Vec::new();
    for n in 0..4 {
        body.extend_from_slice(
            format!(
                "--b\r\nContent-Disposition: form-data; name=\"junk{n}\"\r\n\r\n{}\r\n",
                "y".repeat(1 << 20)
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        b"--b\r\nContent-Disposition: form-data; name=\"params\"\r\n\r\n{\"foreground\": [[16, 16, 3]]}\r\n--b--\r\n",
    );
    let path = format!("/infer/medico-tiny?session_id={id}&output=json");
    let (status, answer) = http(
        server.port,
        &head("POST", &path, None, "multipart/form-data; boundary=b", body.len()),
        &body,
        false,
    );
    assert_eq!(status, 200, "{answer}");

    // D6: expiry past any clock, or past the server's maximum; a negative or non-numeric one (D9).
    for (query, expect) in [
        ("?expiry=18446744073709551615", "maximum"),
        ("?expiry=604801", "maximum"),
        ("?expiry=-1", "expiry"),
        ("?expiry=soon", "expiry"),
    ] {
        let (status, message) = detail(upload(&server, "cube.nii", &cube, query));
        assert!((400..500).contains(&status), "{query}: {status} {message}");
        assert!(message.contains(expect), "{query}: {message}");
    }
    let (status, body) = upload(&server, "cube.nii", &cube, "?expiry=604800");
    assert_eq!(status, 200, "{body}");
    let long: Value = serde_json::from_str(&body).unwrap();
    let long_id = long["session_id"].as_str().unwrap();
    let get = http(
        server.port,
        &head("GET", &format!("/session/{long_id}"), None, "text/plain", 0),
        b"",
        false,
    );
    assert_eq!(get.0, 200, "{}", get.1);
    // C5: no server folder in a session's description.
    assert!(
        !get.1.contains("/tmp") && !get.1.contains("medico-session"),
        "{}",
        get.1
    );

    // C7: a slice before the first, like one past the last.
    for slice in ["-1", "8"] {
        let params = format!(r#"{{"foreground": [[16, 16, 3]], "slice": {slice}}}"#);
        let (status, message) = detail(infer(&server, "medico-tiny", &id, &params));
        assert_eq!(status, 422, "slice {slice}: {message}");
    }

    // D7: a 3000 x 1 x 2 volume: every prompt is answered.
    let thin = nifti_f32([3000, 1, 2], |i, _, _| (i % 50) as f32);
    let thin_id = session(&server, "thin.nii", &thin);
    for params in [
        r#"{"foreground": [[1500, 0, 1]]}"#,
        r#"{"roi": [100, 200, 0, 0, 0, 1]}"#,
    ] {
        let (status, body) = infer(&server, "medico-tiny", &thin_id, params);
        assert_eq!(status, 200, "{params}: {body}");
    }
    let (status, body) = infer(&server, "medico-tiny-3d", &thin_id, r#"{"foreground": [[1500, 0, 1]]}"#);
    assert_eq!(status, 200, "3D: {body}");
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn framework_errors_hosts_origins_and_auth_bodies_are_answered_in_json() {
    let key = "k3y";
    let server = Server::start(&[
        "--quiet",
        "--api-key",
        key,
        "--allowed-origin",
        "https://viewer.example",
    ]);
    let port = server.port;
    let raw = |request: &str| http(port, request, b"", false);

    // D4: a keyless 400 MB login form is refused after its first bytes, not buffered.
    reset_peak(&server);
    let start = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(
            b"POST /auth/token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n\
              Content-Length: 419430400\r\n\r\n",
        )
        .unwrap();
    let _ = stream.write_all(&vec![b'a'; 1 << 20]);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"detail\""), "{answer}");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(peak_mb(&server) < 1024.0);

    // D9: the framework's own answers, in FastAPI's shape.
    let keyed = |method: &str, path: &str, ct: &str| {
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {key}\r\nConnection: close\r\nContent-Type: {ct}\r\nContent-Length: 0\r\n\r\n")
    };
    for (request, status) in [
        (keyed("PUT", "/session/", "multipart/form-data"), 400),
        (
            keyed("PUT", "/session/?expiry=x", "multipart/form-data; boundary=b"),
            400,
        ),
        (keyed("GET", "/session/%FF%FE", "text/plain"), 400),
        (keyed("DELETE", "/info/", "text/plain"), 405),
        (keyed("POST", "/infer/medico-tiny", "text/plain"), 400),
    ] {
        let (got, message) = detail(raw(&request));
        assert_eq!(got, status, "{request}: {message}");
        assert!(!message.is_empty());
    }

    // C4: a host name not served, and a page of another origin.
    let (status, message) = detail(raw(&format!(
        "GET /info/ HTTP/1.1\r\nHost: attacker.example:8000\r\nX-API-Key: {key}\r\nConnection: close\r\n\r\n"
    )));
    assert_eq!(status, 421, "{message}");
    assert!(message.contains("--allowed-host"), "{message}");
    let cross_site = "POST /infer/medico-tiny HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://evil.example\r\n\
                      Connection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\n\r\n";
    let (status, message) = detail(raw(cross_site));
    assert_eq!(status, 403, "{message}");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET /info/ HTTP/1.1\r\nHost: localhost\r\nOrigin: https://viewer.example\r\nX-API-Key: {key}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("access-control-allow-origin: https://viewer.example"),
        "{answer}"
    );
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn slow_clients_are_dropped_and_sigterm_ends_within_the_grace_period() {
    let server = Server::start(&[
        "--quiet",
        "--header-timeout",
        "1",
        "--body-timeout",
        "1",
        "--shutdown-grace",
        "2",
    ]);
    let port = server.port;
    // D5: half a header, then nothing: the connection is closed after the header timeout.
    let start = Instant::now();
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"GET /info/ HTTP/1.1\r\nHo").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut sink = Vec::new();
    let _ = slow.read_to_end(&mut sink);
    let waited = start.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "a half-sent header held for {waited:?}"
    );

    // D5: an upload at a few bytes a second is cut off.
    let start = Instant::now();
    let mut trickle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    trickle
        .write_all(
            b"PUT /session/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=b\r\n\
              Content-Length: 1000000\r\n\r\n--b\r\n",
        )
        .unwrap();
    trickle.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut answer = Vec::new();
    while start.elapsed() < Duration::from_secs(10) {
        if trickle.write_all(b"x").is_err() {
            break;
        }
        let mut buf = [0u8; 4096];
        match trickle.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if !answer.is_empty() {
            break;
        }
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "a trickling upload held for {:?}",
        start.elapsed()
    );
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer:?}");

    // SIGTERM with a client holding half a header: the server is gone within the grace period.
    let mut holder = TcpStream::connect(("127.0.0.1", port)).unwrap();
    holder.write_all(b"GET /info/ HTTP/1.1\r\n").unwrap();
    let start = Instant::now();
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "SIGTERM took {:?}",
        start.elapsed()
    );
}

#[test]
fn a_walk_through_a_tall_volume_is_bounded_and_never_holds_up_a_click() {
    let server = Server::start(&["--quiet", "--max-walk-slices", "300"]);
    let port = server.port;
    // D3: a 16 x 16 x 20000 volume (a bright square on every slice): a walk from one click would go on
    // through all 20,000 slices.
    let tall = nifti_f32([16, 16, 20_000], |i, j, k| {
        let on = (4..12).contains(&i) && (4..12).contains(&j);
        if on {
            100.0 + (k % 7) as f32
        } else {
            (k % 5) as f32
        }
    });
    let tall_gz = gzip_members(&tall, 0);
    let tall_id = session(&server, "tall.nii.gz", &tall_gz);
    let cube = nifti_f32([32, 32, 8], |i, j, _| {
        if (8..24).contains(&i) && (8..24).contains(&j) {
            100.0
        } else {
            0.0
        }
    });
    let cube_id = session(&server, "cube.nii", &cube);
    let click = r#"{"foreground": [[16, 16, 3]]}"#;
    assert_eq!(infer(&server, "medico-tiny", &cube_id, click).0, 200);

    let walk_path = format!("/infer/medico-tiny-3d?session_id={tall_id}&output=json");
    let path = walk_path.clone();
    let walker = std::thread::spawn(move || {
        let start = Instant::now();
        let (ct, body) = multipart("label", "x.bin", b"", Some(r#"{"foreground": [[8, 8, 10000]]}"#));
        let (status, body) = http(port, &head("POST", &path, None, &ct, body.len()), &body, false);
        (status, body, start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut latencies = Vec::new();
    while !walker.is_finished() && latencies.len() < 20 {
        let start = Instant::now();
        let (status, body) = infer(&server, "medico-tiny", &cube_id, click);
        assert_eq!(status, 200, "{body}");
        latencies.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let (status, body, walk_time) = walker.join().unwrap();
    assert_eq!(status, 200, "{body}");
    let walked: Value = serde_json::from_str(&body).unwrap();
    let slices = walked["slices"].as_array().unwrap();
    println!(
        "walk: {} slices in {walk_time:?}; clicks meanwhile: {latencies:?} ms",
        slices.len()
    );
    assert!(slices.len() <= 601, "{} slices walked", slices.len());
    let (lo, hi) = (slices[0].as_u64().unwrap(), slices[slices.len() - 1].as_u64().unwrap());
    assert!(lo >= 9700 && hi <= 10300, "{lo}..{hi}");
    assert!(
        !latencies.is_empty(),
        "the walk ended before a click could be timed ({walk_time:?})"
    );
    let slowest = latencies.iter().cloned().fold(0.0, f64::max);
    assert!(slowest < 1000.0, "a click waited {slowest} ms behind a walk");

    // A walk whose client goes away stops: the next walk (the one walk worker) starts at once. The walk
    // above took 5 s for 601 slices; this one may take 1,025.
    let (ct, body) = multipart("label", "x.bin", b"", Some(r#"{"foreground": [[8, 8, 10000]]}"#));
    let path = walk_path;
    let mut leaving = TcpStream::connect(("127.0.0.1", port)).unwrap();
    leaving
        .write_all(head("POST", &path, None, &ct, body.len()).as_bytes())
        .unwrap();
    leaving.write_all(&body).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(leaving);
    let start = Instant::now();
    let (status, body) = infer(&server, "medico-tiny-3d", &cube_id, click);
    let after_leaving = start.elapsed();
    println!("a walk after one whose client left: {after_leaving:?}");
    assert_eq!(status, 200, "{body}");
    assert!(
        after_leaving < Duration::from_secs(3),
        "waited {after_leaving:?} behind an abandoned walk"
    );

    // A request's inference time is bounded: a walk past --work-timeout is stopped with a 503.
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    let strict = Server::start(&["--quiet", "--work-timeout", "1"]);
    let tall_id = session(&strict, "tall.nii.gz", &tall_gz);
    let start = Instant::now();
    let (status, message) = detail(infer(
        &strict,
        "medico-tiny-3d",
        &tall_id,
        r#"{"foreground": [[8, 8, 10000]]}"#,
    ));
    println!("work timeout: {status} after {:?}: {message}", start.elapsed());
    assert_eq!(status, 503, "{message}");
    assert!(message.contains("1 s of inference time"), "{message}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn expired_sessions_are_closed_without_waiting_for_a_request() {
    // C3: a session asking for 1 s is closed by the server's sweep (every 5 s), with no request coming.
    let server = Server::start(&[]);
    let cube = nifti_f32([8, 8, 4], |i, _, _| i as f32);
    let (status, body) = upload(&server, "cube.nii", &cube, "?expiry=1");
    assert_eq!(status, 200, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_secs(7));
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains(&format!("session {id} closed (expired)")), "{log}");
}
