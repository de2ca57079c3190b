//! The protobuf schema: lossless round trip and `protoc --decode` with the shipped .proto.

use std::process::Command;

use pagefeat::EngineKind;
use pagefeat::extract::{ProfileArg, read_page};
use pagefeat::stat_node::{self, StatTree};

use crate::support::{labels_only, options, pipeline, runtime};

fn real_tree() -> StatTree {
    let page = read_page(
        &testkit::data_path("pages/clean/teval__shabka.org.about.html"),
        1 << 24,
    )
    .unwrap();
    let pipeline = pipeline(labels_only());
    runtime()
        .block_on(pipeline.extract(
            &page,
            None,
            &options(EngineKind::Embedded, ProfileArg::Panorama),
        ))
        .unwrap()
        .result
        .tree
}

#[test]
fn stat_tree_round_trips_losslessly() {
    let tree = real_tree();
    assert!(tree.nodes.len() > 100, "{} nodes", tree.nodes.len());
    let bytes = stat_node::encode(&tree);
    let back = stat_node::decode(&bytes).unwrap();
    assert_eq!(back, tree);
    // Same bytes again: maps are sorted, so encoding is deterministic.
    assert_eq!(stat_node::encode(&back), bytes);
    // Links are consistent: every child names its parent, siblings chain in order.
    for node in &tree.nodes {
        for (k, child) in node.children.iter().enumerate() {
            let c = stat_node::node_by_id(&tree, *child).unwrap();
            assert_eq!(c.parent, Some(node.id));
            assert_eq!(c.next_sibling, node.children.get(k + 1).copied());
        }
    }
}

#[test]
fn protoc_decodes_an_output_file_with_the_shipped_proto() {
    let protoc = testkit::require("protoc");
    let tree = real_tree();
    let dir = testkit::tempdir();
    let out = dir.path().join("out.pb");
    stat_node::write_file(&out, &tree).unwrap();
    let proto_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let output = Command::new(protoc)
        .arg(format!("--proto_path={}", proto_dir.display()))
        .arg("--decode=pagefeat.v1.StatTree")
        .arg("statnode.proto")
        .stdin(fs_err::File::open(&out).unwrap().into_parts().0)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("type: \"LayoutView\""),
        "{}",
        &text[..text.len().min(500)]
    );
    assert!(text.contains("profile: PROFILE_PANORAMA"));
    let decoded_nodes =
        text.matches("\nnodes {").count() + usize::from(text.starts_with("nodes {"));
    assert_eq!(decoded_nodes, tree.nodes.len());
}
