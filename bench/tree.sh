# Shared by the benchmarks (sourced): a realistic OS-like tree from the host's files.
# Needs, from the caller: $work (scratch dir), $kver, $SOURCE, $SOURCE_DIRS, die(), and the
# kernel files $work/kernel/vmlinuz and $work/kernel/initramfs.img.
# make_tree DIR BYTES: entries of SOURCE/SOURCE_DIRS in find's pre-order (without lib/modules)
# until BYTES of files are taken, copied with owners, modes, times, xattrs, ACLs and hardlinks;
# plus lib/modules/<kver>/{vmlinuz,initramfs.img} and lib/os-release. Prints the bytes taken.
make_tree() {
    local dest=$1 limit=$2 list=$work/files.list taken=0 type bytes path d dirs=()
    : >"$list"
    for d in $SOURCE_DIRS; do [ -d "$SOURCE/$d" ] && [ ! -L "$SOURCE/$d" ] && dirs+=("$d"); done
    ((${#dirs[@]})) || die "none of '$SOURCE_DIRS' is a directory in '$SOURCE'"
    while IFS=' ' read -r -d '' type bytes path; do
        if [ "$type" = f ]; then
            ((taken + bytes > limit)) && break
            taken=$((taken + bytes))
        fi
        printf '%s\0' "$path" >>"$list"
    done < <(cd "$SOURCE" && find "${dirs[@]}" -xdev -path lib/modules -prune -o -printf '%y %s %p\0')
    mkdir "$dest"
    tar -C "$SOURCE" --null --no-recursion -T "$list" --xattrs --xattrs-include='*' --acls -cf - |
        tar -C "$dest" -xf - --xattrs --xattrs-include='*' --acls --numeric-owner -p
    mkdir -p "$dest/lib/modules/$kver"
    cp "$work/kernel/vmlinuz" "$work/kernel/initramfs.img" "$dest/lib/modules/$kver/"
    rm -f "$dest/lib/os-release"
    printf 'NAME="Bench OS"\nPRETTY_NAME="Bench OS 1"\nID=bench\nVERSION_ID=1\n' >"$dest/lib/os-release"
    echo "$taken"
}
