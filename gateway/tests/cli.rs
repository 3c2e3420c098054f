//! The `gateway` binary: startup validation and `--health-check`.

mod common;

use std::process::Command;

use common::*;

fn gateway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
}

#[test]
fn invalid_settings_fail_at_startup_naming_them() {
    for (var, value) in [
        ("GATEWAY_PORT", "http"),
        ("GATEWAY_UPSTREAM_TIMEOUT", "soon"),
        ("GATEWAY_RETRIES", "-1"),
        ("SERVICE_DISCOVERY_URL", "https://consul.example:8501"),
    ] {
        let out = gateway()
            .env(var, value)
            .env("GATEWAY_HOST", "127.0.0.1")
            .env(
                "GATEWAY_PORT",
                if var == "GATEWAY_PORT" { value } else { "0" },
            )
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}={value} started");
        assert!(stderr.contains(var), "{var}={value}: {stderr}");
    }
}

#[test]
fn open_lifecycle_endpoints_beyond_loopback_are_warned_about_at_startup() {
    // 192.0.2.1 (TEST-NET-1) is never assigned, so the bind fails after the startup checks
    // and nothing listens beyond loopback during the test.
    let out = gateway()
        .env("GATEWAY_HOST", "192.0.2.1")
        .env("GATEWAY_PORT", "0")
        .env("RUNTIME", "process")
        .env_remove("GATEWAY_ADMIN_TOKEN")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let warning = stdout
        .lines()
        .find(|l| l.contains("WARN") && l.contains("GATEWAY_ADMIN_TOKEN is not set"))
        .unwrap_or_else(|| panic!("no warning in: {stdout}"));
    assert!(warning.contains("192.0.2.1:0"), "{warning}");
    // With the token set, no warning.
    let out = gateway()
        .env("GATEWAY_HOST", "192.0.2.1")
        .env("GATEWAY_PORT", "0")
        .env("RUNTIME", "process")
        .env("GATEWAY_ADMIN_TOKEN", "t0ken")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot listen on 192.0.2.1:0"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("GATEWAY_ADMIN_TOKEN is not set"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_mode_probes_a_running_gateway() {
    let consul = spawn_consul().await;
    let gw = spawn_gateway(gateway_config(&consul.base_url(), &[])).await;
    let port = gw.addr.port().to_string();
    let up = tokio::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--health-check"])
        .env("GATEWAY_PORT", &port)
        .status()
        .await
        .unwrap();
    assert!(up.success());
    // The probe goes where GATEWAY_HOST says the gateway listens (loopback only when it
    // listens on every address): this gateway is on 127.0.0.1, not 127.0.0.2.
    let elsewhere = tokio::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--health-check"])
        .env("GATEWAY_PORT", &port)
        .env("GATEWAY_HOST", "127.0.0.2")
        .status()
        .await
        .unwrap();
    assert_eq!(elsewhere.code(), Some(1));

    drop(gw);
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let free_port = free.local_addr().unwrap().port().to_string();
    drop(free);
    let down = tokio::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--health-check"])
        .env("GATEWAY_PORT", &free_port)
        .status()
        .await
        .unwrap();
    assert_eq!(down.code(), Some(1));
}
