#!/bin/sh
# FreeBSD's own image recipe, release/scripts/make-oci-image.sh (freebsd-src, main),
# transcribed for a Linux host so that bench/build.py can run it side by side with
# this pipeline, on the same packages, in the same run.
#
#   [OCI_CMD=/bin/sh] sh bench/make-oci-image.sh WORKDIR IMAGE BASE_IMAGE ARCH OUTPUT PACKAGE.pkg ...
#
# WORKDIR holds container-image-<IMAGE>/ as the original's ${.OBJDIR} does; BASE_IMAGE
# is the parent flavour ("" for none); the packages are the flavour's locked closure
# (what the pipeline's layer of that flavour installs).  The steps are the original's:
#
#   create_container   extract the parent's rootfs.tar.gz into a fresh rootfs/
#   install_packages   put every package's files into rootfs/
#   commit_container   tar the whole rootfs, sha256 it, gzip -f it (gzip -6, one thread),
#                      write config.json, manifest.json and the layout, hardlink the blobs,
#                      and tar --xz the layout (xz -6, one thread, as bsdtar's liblzma)
#
# What had to change on Linux, none of it extra work:
# - pkg(8) cannot install FreeBSD packages here, so install_packages extracts each
#   package's payload with tar (zstd), which is the part of pkg install that scales with
#   the packages; pkg's database and repository metadata are not written.
# - the static image's mtree, pwd_mkdb and certctl have no Linux counterpart: skipped
#   (they cost milliseconds on FreeBSD).
# - FreeBSD's sha256 -q and stat -f %z are sha256sum and stat -c %s; GNU tar names
#   members ./path instead of bsdtar's --strip-components 1, and writes no sparse
#   entries unless asked, as --no-read-sparse makes bsdtar do.
set -eu

workdir_root=$1; image=$2; base_image=$3; arch=$4; output=$5
shift 5

case ${arch} in
	i386) oci_arch=386 ;;
	aarch64) oci_arch=arm64 ;;
	*) oci_arch=${arch} ;;
esac

create_container() {
	workdir=$1; base_workdir=$2
	rm -rf "${workdir}/rootfs"
	mkdir -p "${workdir}/rootfs"
	if [ -n "${base_workdir}" ]; then
		tar -C "${workdir}/rootfs" -xf "${base_workdir}/rootfs.tar.gz"
	fi
}

install_packages() {
	rootdir=$1/rootfs; shift
	for pkg in "$@"; do
		tar -C "${rootdir}" --zstd -xf "${pkg}" --exclude='+COMPACT_MANIFEST' --exclude='+MANIFEST'
	done
	rm -rf "${rootdir}/var/db/pkg/repos"
}

commit_container() {
	workdir=$1
	rm -f "${workdir}/rootfs.tar" "${workdir}/rootfs.tar.gz"
	tar -C "${workdir}/rootfs" -cf "${workdir}/rootfs.tar" .
	diff_id=$(sha256sum < "${workdir}/rootfs.tar" | cut -d' ' -f1)
	gzip -f "${workdir}/rootfs.tar"
	create_time=$(date -u +%Y-%m-%dT%TZ)
	root_hash=$(sha256sum < "${workdir}/rootfs.tar.gz" | cut -d' ' -f1)
	root_size=$(stat -c %s "${workdir}/rootfs.tar.gz")
	config=
	if [ -n "${OCI_CMD:-}" ]; then
		config=",\"config\":{\"cmd\":[\"${OCI_CMD}\"]}"
	fi
	echo "{\"created\":\"${create_time}\",\"architecture\":\"${oci_arch}\",\"os\":\"freebsd\"${config},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:${diff_id}\"]},\"history\":[{\"created\":\"${create_time}\",\"created_by\":\"make-oci-image.sh\"}]}" > "${workdir}/config.json"
	config_hash=$(sha256sum < "${workdir}/config.json" | cut -d' ' -f1)
	config_size=$(stat -c %s "${workdir}/config.json")
	echo "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:${config_hash}\",\"size\":${config_size}},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:${root_hash}\",\"size\":${root_size}}],\"annotations\":{}}" > "${workdir}/manifest.json"
	manifest_hash=$(sha256sum < "${workdir}/manifest.json" | cut -d' ' -f1)
	manifest_size=$(stat -c %s "${workdir}/manifest.json")
	rm -rf "${workdir}/oci"
	mkdir -p "${workdir}/oci/blobs/sha256"
	echo "{\"imageLayoutVersion\": \"1.0.0\"}" > "${workdir}/oci/oci-layout"
	echo "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:${manifest_hash}\",\"size\":${manifest_size},\"annotations\":{\"org.opencontainers.image.ref.name\":\"freebsd-${image}:${arch}\"}}]}" > "${workdir}/oci/index.json"
	ln "${workdir}/rootfs.tar.gz" "${workdir}/oci/blobs/sha256/${root_hash}"
	ln "${workdir}/config.json" "${workdir}/oci/blobs/sha256/${config_hash}"
	ln "${workdir}/manifest.json" "${workdir}/oci/blobs/sha256/${manifest_hash}"
	tar -C "${workdir}/oci" --xz -cf "${output}" .
}

workdir=${workdir_root}/container-image-${image}
base_workdir=
if [ -n "${base_image}" ]; then
	base_workdir=${workdir_root}/container-image-${base_image}
fi
create_container "${workdir}" "${base_workdir}"
install_packages "${workdir}" "$@"
commit_container "${workdir}"
