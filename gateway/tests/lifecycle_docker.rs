//! The lifecycle endpoints with the Docker runtime against this machine's real Docker Engine.
//!
//! No image can be pulled here, so the tests use an image that is already local (the node
//! image `microservices-gdp-growth-model:latest` when the compose build made it, else any
//! tagged local image whose container keeps running, since a launch answers only once the
//! container runs): the launch test checks what the gateway creates (labels, image,
//! locked-down HostConfig, name), the `GATEWAY_MAX_INSTANCES` limit, lists and deletes it;
//! whether the node inside then serves is the compose end-to-end test's job
//! (tests/e2e/docker.sh). A node container that exits at once needs the node image. Without a
//! reachable daemon or a local image the Docker tests print why they are skipped. The discovery is a fixed healthy
//! set that lists `LinearRegression` (the Docker runtime's launchable-model rule reads it).
//! Every container a test creates is removed at the end, also when it fails.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, NetworkCreateRequest};
use bollard::query_parameters::{CreateContainerOptions, ListContainersOptions, ListImagesOptions};
use clap::Parser;
use gateway::discovery::{Discovery, Endpoint};
use gateway::{AppState, Config};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// The node image compose builds; preferred when present.
const NODE_IMAGE: &str = "microservices-gdp-growth-model:latest";

/// A gateway served in this process; dropping it stops it.
struct TestGateway {
    base: String,
    _stop: oneshot::Sender<()>,
}

impl TestGateway {
    async fn start(args: &[&str], discovery: Discovery) -> TestGateway {
        http_serve::telemetry::init_for_test();
        let mut all = vec!["gateway"];
        if !args.contains(&"--service-discovery-url") {
            all.extend(["--service-discovery-url", "http://127.0.0.1:9"]);
        }
        all.extend_from_slice(args);
        let config = Config::try_parse_from(all).unwrap();
        let state = AppState::with_discovery(config, discovery, CancellationToken::new());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(gateway::serve(listener, state, async {
            let _ = stopped.await;
        }));
        TestGateway { base, _stop: stop }
    }

    async fn call(&self, method: reqwest::Method, path: &str) -> (u16, Value) {
        let resp = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
            .request(method, format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

/// A healthy set whose one node lists `LinearRegression`.
fn discovery() -> Discovery {
    Discovery::fixed(vec![Endpoint {
        id: "node-1".into(),
        addr: "127.0.0.1:1".into(),
        models: Some(Arc::from(vec!["LinearRegression".to_string()])),
    }])
}

/// Says why `test` is skipped: on stderr, and appended to the file `TEST_SKIP_LOG` names
/// (scripts/test.sh sets it and lists every skip in its summary, since cargo test hides the
/// output of passing tests).
fn skip(test: &str, why: &str) {
    let line = format!("SKIPPED {test}: {why}");
    eprintln!("{line}");
    if let Some(log) = std::env::var_os("TEST_SKIP_LOG") {
        use std::io::Write;
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(error) = appended {
            eprintln!(
                "cannot record the skip in {}: {error}",
                log.to_string_lossy()
            );
        }
    }
}

/// Connects to the local engine, or says why the test is skipped.
async fn docker_or_skip(test: &str) -> Option<Docker> {
    let connected = match Docker::connect_with_local_defaults() {
        Ok(docker) => docker.negotiate_version().await,
        Err(e) => Err(e),
    };
    match connected {
        Ok(docker) => Some(docker),
        Err(error) => {
            skip(test, &format!("no Docker Engine reachable ({error})"));
            None
        }
    }
}

/// A local image to create containers from, or says why the test is skipped.
async fn local_image_or_skip(docker: &Docker, test: &str) -> Option<String> {
    let images = match docker.list_images(None::<ListImagesOptions>).await {
        Ok(images) => images,
        Err(error) => {
            skip(test, &format!("cannot list local images ({error})"));
            return None;
        }
    };
    let tags: Vec<String> = images
        .into_iter()
        .flat_map(|i| i.repo_tags)
        .filter(|t| !t.starts_with("<none>"))
        .collect();
    let image = tags
        .iter()
        .find(|t| *t == NODE_IMAGE)
        .or_else(|| tags.first())
        .cloned();
    if image.is_none() {
        skip(
            test,
            "no local image to create containers from (none can be pulled; build one, e.g. scripts/compose-offline.sh build)",
        );
    }
    image
}

/// Removes the containers, then the networks, it names when dropped (also on a panic).
#[derive(Default)]
struct Cleanup {
    containers: Vec<String>,
    networks: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for (kind, names) in [("container", &self.containers), ("network", &self.networks)] {
            if !names.is_empty() {
                let force: &[&str] = if kind == "container" { &["-f"] } else { &[] };
                let _ = std::process::Command::new("docker")
                    .args([kind, "rm"])
                    .args(force)
                    .args(names)
                    .output();
            }
        }
    }
}

async fn create(docker: &Docker, name: &str, image: &str, labels: &[(&str, &str)]) -> String {
    let labels: HashMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.to_string()),
                ..Default::default()
            }),
            ContainerCreateBody {
                image: Some(image.to_string()),
                labels: Some(labels),
                ..Default::default()
            },
        )
        .await
        .expect("create a test container")
        .id
}

/// Containers (any state) carrying `label`.
async fn count_labelled(docker: &Docker, label: &str) -> usize {
    docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![label.to_string()],
            )])),
            ..Default::default()
        }))
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn launch_list_delete_and_guardrails_on_the_real_engine() {
    let test = "launch_list_delete_and_guardrails_on_the_real_engine";
    let Some(docker) = docker_or_skip(test).await else {
        return;
    };
    let Some(image) = local_image_or_skip(&docker, test).await else {
        return;
    };
    eprintln!("{test}: using local image {image}");
    let cluster = format!("lctest{:08x}", rand::random::<u32>());
    let mut cleanup = Cleanup::default();
    // A user-defined network, like compose's `<project>_compute-network`.
    let network = format!("{cluster}_compute-network");
    docker
        .create_network(NetworkCreateRequest {
            name: network.clone(),
            driver: Some("bridge".to_string()),
            ..Default::default()
        })
        .await
        .expect("create a test network");
    cleanup.networks.push(network.clone());

    // Containers the gateway must not touch: no labels; this cluster's label but no node
    // label (like the compose project's Consul or gateway); a node of another cluster.
    let mut foreign = Vec::new();
    for (suffix, labels) in [
        ("plain", vec![]),
        (
            "not-a-node",
            vec![("gdp-serving.cluster", cluster.as_str())],
        ),
        (
            "other-cluster",
            vec![
                ("gdp-serving.cluster", "someoneelse"),
                ("gdp-serving.model", "LinearRegression"),
            ],
        ),
    ] {
        let id = create(&docker, &format!("{cluster}-{suffix}"), &image, &labels).await;
        cleanup.containers.push(id.clone());
        foreign.push(id);
    }

    let gw = TestGateway::start(
        &[
            "--runtime",
            "docker",
            "--cluster-name",
            &cluster,
            "--node-image",
            &image,
            "--docker-network",
            &network,
            "--node-stop-timeout",
            "2s",
            "--max-instances",
            "1",
        ],
        discovery(),
    )
    .await;
    let own = format!("gdp-serving.cluster={cluster}");

    // === guardrails ===
    for id in &foreign {
        for given in [id.as_str(), &id[..12]] {
            let (status, body) = gw
                .call(
                    reqwest::Method::DELETE,
                    &format!("/api/models/instances/{given}"),
                )
                .await;
            assert_eq!(status, 404, "DELETE foreign {given}: {body}");
        }
        let still = docker.inspect_container(id, None).await;
        assert!(still.is_ok(), "foreign container {id} was removed");
    }
    let (status, _) = gw
        .call(
            reqwest::Method::DELETE,
            "/api/models/instances/0123456789ab",
        )
        .await;
    assert_eq!(status, 404, "unknown id");
    let (status, body) = gw
        .call(reqwest::Method::POST, "/api/models/launch/NoSuchModel")
        .await;
    assert_eq!(status, 404, "unknown model: {body}");
    let (status, body) = gw
        .call(reqwest::Method::POST, "/api/models/launch/bad%20name%21")
        .await;
    assert_eq!(status, 422, "bad name: {body}");
    assert_eq!(
        count_labelled(&docker, &own).await,
        1,
        "a rejected launch created a container"
    );
    let (status, body) = gw
        .call(
            reqwest::Method::GET,
            "/api/models/instances/LinearRegression",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"model": "LinearRegression", "instances": []}),
        "foreign containers are not listed"
    );

    // === launch ===
    let (status, launched) = gw
        .call(reqwest::Method::POST, "/api/models/launch/LinearRegression")
        .await;
    assert_eq!(status, 200, "launch: {launched}");
    let id = launched["container_id"].as_str().unwrap().to_string();
    cleanup.containers.push(id.clone());
    let name = format!("{cluster}-gdp-growth-model-1");
    assert_eq!(
        launched,
        json!({
            "status": "success",
            "message": "Launched new instance for model: LinearRegression",
            "container_id": id,
            "container_name": name,
        })
    );
    let inspect = docker.inspect_container(&id, None).await.unwrap();
    assert_eq!(inspect.name.as_deref(), Some(format!("/{name}").as_str()));
    let config = inspect.config.unwrap();
    assert_eq!(config.image.as_deref(), Some(image.as_str()));
    let labels = config.labels.unwrap();
    assert_eq!(labels["gdp-serving.cluster"], cluster);
    assert_eq!(labels["gdp-serving.model"], "LinearRegression");
    assert_eq!(labels["gdp-serving.role"], "inference-node");
    assert_eq!(labels["gdp-serving.launched-by"], "gateway");
    assert_eq!(
        inspect.state.unwrap().running,
        Some(true),
        "the launch answered before the container ran"
    );
    let env = config.env.unwrap();
    assert!(
        env.contains(&"GDP_MODEL_NAME=LinearRegression".to_string()),
        "{env:?}"
    );
    assert!(
        env.contains(&"SERVICE_NAME=gdp-growth-model".to_string()),
        "{env:?}"
    );
    let host = inspect.host_config.unwrap();
    assert_eq!(host.privileged, Some(false));
    assert!(host.binds.unwrap_or_default().is_empty(), "no binds");
    assert!(host.cap_add.unwrap_or_default().is_empty(), "no cap-add");
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
    assert_eq!(host.network_mode.as_deref(), Some(network.as_str()));
    let endpoints = inspect.network_settings.unwrap().networks.unwrap();
    assert!(
        endpoints[&network]
            .aliases
            .as_ref()
            .unwrap()
            .contains(&name),
        "alias {name} on {network}: {endpoints:?}"
    );
    assert!(host.pid_mode.unwrap_or_default().is_empty(), "no host pid");
    assert!(host.memory.unwrap() > 0, "memory limit");
    assert!(host.pids_limit.unwrap() > 0, "pids limit");

    // === list: only the launched container ===
    let (status, body) = gw
        .call(
            reqwest::Method::GET,
            "/api/models/instances/LinearRegression",
        )
        .await;
    assert_eq!(status, 200);
    let instances = body["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 1, "{body}");
    assert_eq!(instances[0]["id"], id.as_str());
    assert_eq!(instances[0]["name"], name.as_str());
    assert!(instances[0]["status"].is_string(), "{body}");
    assert!(
        instances[0]["image"]
            .as_array()
            .unwrap()
            .contains(&json!(image)),
        "{body}"
    );
    let (_, body) = gw
        .call(reqwest::Method::GET, "/api/models/instances/Lasso")
        .await;
    assert_eq!(body["instances"], json!([]));

    // === GATEWAY_MAX_INSTANCES=1: a second launch is refused, nothing is created ===
    let (status, body) = gw
        .call(reqwest::Method::POST, "/api/models/launch/LinearRegression")
        .await;
    assert_eq!(status, 429, "second launch: {body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("GATEWAY_MAX_INSTANCES"),
        "{body}"
    );
    assert_eq!(
        count_labelled(&docker, &own).await,
        2,
        "a refused launch created a container"
    );

    // === delete by prefix: stopped and removed ===
    let prefix = &id[..12];
    let (status, body) = gw
        .call(
            reqwest::Method::DELETE,
            &format!("/api/models/instances/{prefix}"),
        )
        .await;
    assert_eq!(status, 200, "delete: {body}");
    assert_eq!(
        body,
        json!({"status": "success", "message": format!("Shutdown container: {prefix}")})
    );
    assert!(
        docker.inspect_container(&id, None).await.is_err(),
        "deleted container still exists"
    );
    for id in &foreign {
        assert!(docker.inspect_container(id, None).await.is_ok());
    }
}

#[tokio::test]
async fn a_node_container_that_exits_at_once_is_a_502_and_is_removed() {
    let test = "a_node_container_that_exits_at_once_is_a_502_and_is_removed";
    let Some(docker) = docker_or_skip(test).await else {
        return;
    };
    if docker.inspect_image(NODE_IMAGE).await.is_err() {
        skip(
            test,
            &format!("the node image {NODE_IMAGE} is not local (scripts/compose-offline.sh build)"),
        );
        return;
    }
    let cluster = format!("lctest{:08x}", rand::random::<u32>());
    let mut cleanup = Cleanup::default();
    let network = format!("{cluster}_compute-network");
    docker
        .create_network(NetworkCreateRequest {
            name: network.clone(),
            driver: Some("bridge".to_string()),
            ..Default::default()
        })
        .await
        .expect("create a test network");
    cleanup.networks.push(network.clone());
    // The node refuses a non-http SERVICE_DISCOVERY_URL at startup and exits with 1.
    let gw = TestGateway::start(
        &[
            "--service-discovery-url",
            "https://127.0.0.1:9",
            "--runtime",
            "docker",
            "--cluster-name",
            &cluster,
            "--node-image",
            NODE_IMAGE,
            "--docker-network",
            &network,
            "--max-instances",
            "1",
        ],
        discovery(),
    )
    .await;
    let own = format!("gdp-serving.cluster={cluster}");
    // Twice: the failed launch freed its slot (else the second would be a 429).
    for attempt in 1..=2 {
        let (status, body) = gw
            .call(reqwest::Method::POST, "/api/models/launch/LinearRegression")
            .await;
        if status == 200 {
            cleanup
                .containers
                .push(body["container_id"].as_str().unwrap().to_string());
        }
        assert_eq!(status, 502, "attempt {attempt}: {body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains("exited with code 1"), "{detail}");
        assert_eq!(
            count_labelled(&docker, &own).await,
            0,
            "the failed container is left"
        );
    }
}

#[tokio::test]
async fn unreachable_engine_is_503_and_the_rest_keeps_working() {
    let gw = TestGateway::start(
        &[
            "--runtime",
            "docker",
            "--docker-host",
            "unix:///nonexistent/docker.sock",
        ],
        discovery(),
    )
    .await;
    for (method, path) in [
        (reqwest::Method::POST, "/api/models/launch/LinearRegression"),
        (
            reqwest::Method::GET,
            "/api/models/instances/LinearRegression",
        ),
        (reqwest::Method::DELETE, "/api/models/instances/abc123"),
    ] {
        let (status, body) = gw.call(method.clone(), path).await;
        assert_eq!(status, 503, "{method} {path}: {body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains("Docker Engine is not reachable"),
            "{detail}"
        );
    }
    // Validation still answers first.
    let (status, _) = gw
        .call(reqwest::Method::POST, "/api/models/launch/bad%20name")
        .await;
    assert_eq!(status, 422);
    let (status, body) = gw.call(reqwest::Method::GET, "/health").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = gw.call(reqwest::Method::GET, "/api/predict/services").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn unset_runtime_falls_back_to_processes_without_an_engine() {
    let models = tempfile::tempdir().unwrap();
    std::fs::write(models.path().join("Lasso.onnx"), b"not used").unwrap();
    let gw = TestGateway::start(
        &[
            "--docker-host",
            "unix:///nonexistent/docker.sock",
            "--models-dir",
            models.path().to_str().unwrap(),
            "--node-binary",
            "/nonexistent/inference-node",
        ],
        discovery(),
    )
    .await;
    // The process runtime answers: an empty list, and its own launchable-model rule (the
    // models directory, not the discovery).
    let (status, body) = gw
        .call(reqwest::Method::GET, "/api/models/instances/Lasso")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["instances"], json!([]));
    let (status, body) = gw
        .call(reqwest::Method::POST, "/api/models/launch/LinearRegression")
        .await;
    assert_eq!(status, 404, "not in MODELS_DIR: {body}");
    let (status, body) = gw
        .call(reqwest::Method::POST, "/api/models/launch/Lasso")
        .await;
    assert_eq!(status, 503, "missing node binary: {body}");
    assert!(
        body["detail"].as_str().unwrap().contains("NODE_BINARY"),
        "{body}"
    );
}

#[tokio::test]
async fn openapi_documents_the_lifecycle_endpoints() {
    let gw = TestGateway::start(&["--runtime", "process"], discovery()).await;
    let (status, doc) = gw.call(reqwest::Method::GET, "/openapi.json").await;
    assert_eq!(status, 200);
    for (path, method) in [
        ("/api/models/launch/{model_name}", "post"),
        ("/api/models/instances/{id}", "get"),
        ("/api/models/instances/{id}", "delete"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing from /openapi.json");
        assert!(op["responses"]["422"].is_object(), "{method} {path}: 422");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["admin_token"]["scheme"],
        "bearer"
    );
}
