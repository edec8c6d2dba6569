#!/bin/sh
# /init of the guest ramdisk that `cargo xtask guest` builds: busybox, the
# virtio modules of the Debian kernel and this script. It mounts the kernel
# file systems, loads the virtio modules, configures the network from `ip=`
# and hands over to busybox init, which keeps a shell on the console and
# powers the machine off on `poweroff`. The other modules in /lib/modules
# (VLAN support) are left to `modprobe`.

/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts

# Dependencies first; the list is written by the ramdisk builder and names
# only the modules needed at every boot.
while read -r module; do
  insmod "/lib/modules/$module.ko" || echo "guest: cannot load $module"
done < /lib/modules/load-order

# With console=hvc0 the console appears only now (virtio_console is a
# module): take it up again, and wait a little for the device to settle.
for i in 1 2 3 4 5 6 7 8 9 10; do
  [ -n "$(cat /sys/class/tty/console/active 2>/dev/null)" ] && break
  sleep 0.1
done
exec </dev/console >/dev/console 2>&1

hostname guest
ifconfig lo 127.0.0.1 up

# ip=<client>:<server>:<gateway>:<netmask>:<hostname>:<device>:<autoconf>
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    ip=*) ip_arg="${arg#ip=}" ;;
  esac
done
if [ -n "$ip_arg" ]; then
  IFS=: read -r client server gateway netmask name device autoconf <<END
$ip_arg
END
  device="${device:-eth0}"
  if [ ! -e "/sys/class/net/$device" ]; then
    echo "guest: ip=$ip_arg: no network device $device"
  elif [ -z "$client" ] || [ "$client" = dhcp ] || [ "$client" = on ]; then
    echo "guest: ip=$ip_arg: only static addresses are supported"
  else
    ifconfig "$device" "$client" ${netmask:+netmask "$netmask"} up
    [ -n "$gateway" ] && route add default gw "$gateway"
    [ -n "$name" ] && hostname "$name"
    echo "guest: $device is $client${netmask:+/$netmask}"
  fi
fi

console="$(cat /sys/class/tty/console/active 2>/dev/null)"
console="${console##* }"
echo "guest: ready, shell on ${console:-console}"
exec /sbin/init
