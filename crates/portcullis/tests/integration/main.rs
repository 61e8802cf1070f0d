//! The one integration test binary: every test runs the real `portcullis` binary on a free
//! loopback port with its own data directory, and talks to it over HTTP or through real
//! clients (skopeo, ctr, podman, buildah). Test images are made by `images.rs`.

mod admission;
mod api;
mod backup;
mod browser;
mod challenges;
mod cli;
mod clients;
mod connections;
mod console;
mod crash;
mod delegation;
mod deploy;
mod doctor;
mod faults;
mod hub_badges;
mod iam;
mod image;
mod images;
mod ldap;
mod ops;
mod postgres;
mod proxy;
mod readme;
mod replicas;
mod robots;
mod scim;
mod signatures;
mod sso;
mod startup;
mod support;
mod upgrade;
mod upstreams;
mod v2;
mod web;
mod workloads;
