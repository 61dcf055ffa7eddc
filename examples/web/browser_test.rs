//! The HTML pages in a real browser: Debian's headless Chromium, driven through
//! chromedriver (WebDriver, with `fantoccini`), adds the flash-sale product to the cart
//! as a guest and checks out. A screenshot of the order page is written to
//! `target/web-example/checkout.png`.
//!
//! Needs `chromium` and `chromium-driver` (scripts/test.sh installs them); without
//! them the test fails.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::seed::FLASH_SKU;
use crate::tests::{OPEN, harness};

/// A free loopback port (bound, then released for the child to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Where the test writes its output.
fn output_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("web-example")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_adds_to_cart_and_checks_out_in_chromium() {
    let h = harness(OPEN, 50, 5).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let service = h
        .app
        .clone()
        .router()
        .into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move { axum::serve(listener, service).await });

    let port = free_port();
    let mut driver = tokio::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver must be installed (apt-get install chromium chromium-driver)");
    let profile = tempfile::tempdir().expect("profile dir");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=1024,768",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }),
    );
    let webdriver = format!("http://127.0.0.1:{port}");
    let mut client = None;
    for _ in 0..100 {
        match ClientBuilder::new(HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&webdriver)
            .await
        {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let c = client.expect("chromedriver did not start a Chromium session in 10 s");

    let result = async {
        c.goto(&format!("{base}/products/{}", h.seeded.flash_slug))
            .await?;
        let stock = c.find(Locator::Css("td.stock")).await?.text().await?;
        assert_eq!(stock, "5 in stock");
        c.find(Locator::Id(&format!("add-{FLASH_SKU}")))
            .await?
            .click()
            .await?;
        c.wait().for_element(Locator::Css("tr.line")).await?;
        assert!(c.current_url().await?.path().ends_with("/cart"));
        let line = c.find(Locator::Css("tr.line")).await?.text().await?;
        assert!(line.contains(FLASH_SKU), "{line}");
        c.find(Locator::Id("customer"))
            .await?
            .send_keys("browser-buyer")
            .await?;
        c.find(Locator::Id("place-order")).await?.click().await?;
        let id = c.wait().for_element(Locator::Id("order-id")).await?;
        let order_id = id.text().await?;
        let status = c.find(Locator::Id("status")).await?.text().await?;
        let png = c.screenshot().await?;
        Ok::<_, fantoccini::error::CmdError>((order_id, status, png))
    }
    .await;
    let closed = c.close().await;
    let _ = driver.kill().await;
    let (order_id, status, png) = result.expect("the browser flow");
    closed.expect("close the session");

    let dir = output_dir();
    std::fs::create_dir_all(&dir).expect("output dir");
    let shot = dir.join("checkout.png");
    std::fs::write(&shot, &png).expect("write the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    println!("screenshot: {}", shot.display());

    // The order exists for the customer, and took the unit.
    assert!(!status.is_empty());
    let id = commerce_core::id::OrderId::new(order_id.as_str()).expect("id");
    let mut order = None;
    // The pipeline reserves the unit; wait until it has taken the order on.
    for _ in 0..250 {
        let o = h
            .app
            .stores
            .orders
            .get_order(&id)
            .await
            .expect("read")
            .expect("the order exists");
        if o.status.to_string() == "PREPARING" {
            order = Some(o);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let order = order.expect("the order reaches PREPARING");
    assert_eq!(order.customer_id.as_str(), "browser-buyer");
    assert_eq!(order.lines[0].sku.as_str(), FLASH_SKU);
    let stock = h
        .app
        .stores
        .inventory
        .stock(&commerce_core::id::Sku::new(FLASH_SKU).expect("sku"))
        .await
        .expect("stock");
    assert_eq!(stock.available(), 4);
    server.abort();
    h.pipeline.stop().await.expect("drain");
}
