#!/usr/bin/python3
"""A real RTSP camera for streamgate's demo, tests and bench: gst-rtsp-server on 127.0.0.1.

Run with Debian's /usr/bin/python3 (python3-gi and gir1.2-gst-rtsp-server-1.0 are installed for
the system Python, see scripts/setup):

    /usr/bin/python3 rtsp_camera.py --port 8554 [--input clip.mp4]

Mount points (each a shared media factory: every client of one path shares one encoder,
except /once/*):
  /main_stream  the input clip (default: the bundled Big Buck Bunny excerpt), MP4 or TS, played in
                a loop in real time, encoded like an IP camera: H.264 High, 1 s GOP, 2 B-frames,
                plus AAC when the clip has audio
  /sub_stream   a live test pattern (moving ball with a clock), 640x360 at 25 fps, H.264
                zero-latency, GOP 25, no audio
  /aux_stream   a live SMPTE test pattern, 320x240 at 25 fps, H.264 zero-latency, GOP 25, with a
                440 Hz tone in AAC
  /h265_stream  a live test pattern in H.265 (what a camera streamgate cannot relay offers)
  /file/NAME    for each --file NAME=PATH: the file's own H.264 video without re-encoding,
                looped in real time (ffmpeg -stream_loop -c copy into MPEG-TS over loopback UDP),
                so its real GOP pattern reaches the media server
  /once/NAME    the same file played once from its start for each session, without
                re-encoding; the session goes silent at its end

Log lines on stdout (one per event, flushed) that tests and the demo read:
  camera: listening rtsp://127.0.0.1:PORT
  camera: session path=/main_stream session=ID client=IP:PORT   (once per new RTSP session)
  camera: play path=/main_stream session=ID
  camera: closed client=IP:PORT
"""
import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstPbutils", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstPbutils, GstRtspServer  # noqa: E402


def log(text):
    sys.stdout.write(f"camera: {text}\n")
    sys.stdout.flush()


def probe(path):
    """Width, height, frame rate (num, den) and whether the file has audio, via Discoverer."""
    discoverer = GstPbutils.Discoverer.new(10 * Gst.SECOND)
    info = discoverer.discover_uri(Gst.filename_to_uri(path))
    videos = info.get_video_streams()
    if not videos:
        raise SystemExit(f"camera: input {path} has no video stream")
    video = videos[0]
    num, den = video.get_framerate_num(), video.get_framerate_denom()
    if num <= 0 or den <= 0:
        num, den = 25, 1
    return video.get_width(), video.get_height(), (num, den), bool(info.get_audio_streams())


class ClipLoop:
    """Plays a file in real time, forever, into intervideosink/interaudiosink channels; the
    RTSP factory of /main_stream encodes from the matching intervideosrc/interaudiosrc."""

    def __init__(self, path, channel, has_audio):
        self.path = path
        desc = (
            f'filesrc location="{path}" ! decodebin name=d '
            f"d. ! queue ! videoconvert ! intervideosink channel={channel}-video sync=true "
        )
        if has_audio:
            desc += (
                f"d. ! queue ! audioconvert ! audioresample ! "
                f"audio/x-raw,format=S16LE,layout=interleaved,rate=44100,channels=2 ! "
                f"interaudiosink channel={channel}-audio sync=true "
            )
        self.pipeline = Gst.parse_launch(desc)
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self.on_message)

    def start(self):
        self.pipeline.set_state(Gst.State.PLAYING)

    def on_message(self, _bus, message):
        if message.type == Gst.MessageType.EOS:
            # Back to the start; the inter elements decouple this timeline from the encoder's.
            self.pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH, 0)
        elif message.type == Gst.MessageType.ERROR:
            error, debug = message.parse_error()
            log(f"clip error {error.message} ({debug})")
            GLib.idle_add(lambda: os.kill(os.getpid(), signal.SIGTERM))


def factory(launch, shared=True):
    f = GstRtspServer.RTSPMediaFactory()
    f.set_launch(launch)
    f.set_shared(shared)
    return f


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FileLoop:
    """Feeds a file's encoded streams, unchanged and looped in real time, as MPEG-TS over UDP to
    the /file/NAME factory (ffmpeg keeps the timestamps continuous across loops)."""

    def __init__(self, path):
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            raise SystemExit("camera: ffmpeg is required for --file (run scripts/setup)")
        self.port = free_udp_port()
        self.process = subprocess.Popen(
            [ffmpeg, "-nostdin", "-v", "error", "-re", "-stream_loop", "-1", "-i", path,
             "-map", "0:v:0", "-c", "copy",
             # Parameter sets in front of every frame (the frames themselves are untouched):
             # the RTSP media, prepared when its first client asks, need not wait up to a GOP.
             "-bsf:v", "h264_mp4toannexb,dump_extra=freq=all", "-f", "mpegts",
             f"udp://127.0.0.1:{self.port}?pkt_size=1316"],
            stdin=subprocess.DEVNULL,
        )

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.process.kill()


def file_launches(path, port):
    """The launch lines of /file/NAME (from the UDP loop) and /once/NAME (from the file): the
    file's video track only, as encoded (an unlinked audio track would stall the demuxer, and
    gst-rtsp-server does not prepare a looped AAC track fed through tsdemux)."""
    video = "video/x-h264 ! queue ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1"
    looped = (
        f'( udpsrc port={port} buffer-size=2097152 caps="video/mpegts,systemstream=true" ! '
        f"tsdemux name=d d. ! {video} )"
    )
    _, _, _, has_audio = probe(path)
    # An audio track goes to a fakesink (unlinked, it would stall the demuxer).
    drop_audio = "d. ! fakesink async=false " if has_audio else ""
    once = f'( filesrc location="{path}" ! parsebin name=d d. ! {video} {drop_audio})'
    return looped, once


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="RTSP port on 127.0.0.1")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (loopback only)")
    parser.add_argument("--input", required=True, help="H.264 clip, MP4 or TS, for /main_stream")
    parser.add_argument(
        "--file", action="append", default=[], metavar="NAME=PATH",
        help="serve PATH without re-encoding at /file/NAME (looped) and /once/NAME",
    )
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        raise SystemExit("camera: only loopback addresses are allowed")

    Gst.init(None)
    path = os.path.abspath(args.input)
    if not os.path.isfile(path):
        raise SystemExit(f"camera: input {path} does not exist")
    width, height, (num, den), has_audio = probe(path)
    clip = ClipLoop(path, "main", has_audio)

    key_int = max(1, round(num / den))
    main_launch = (
        f"( intervideosrc channel=main-video ! videoconvert ! videoscale ! videorate ! "
        f"video/x-raw,format=I420,width={width},height={height},framerate={num}/{den} ! "
        f"x264enc speed-preset=ultrafast bframes=2 b-adapt=false key-int-max={key_int} "
        f"bitrate=1000 ! video/x-h264,profile=high ! "
        f"rtph264pay name=pay0 pt=96 config-interval=-1 "
    )
    if has_audio:
        main_launch += (
            "interaudiosrc channel=main-audio ! audioconvert ! audioresample ! "
            "audio/x-raw,rate=44100,channels=2 ! avenc_aac bitrate=96000 ! "
            "rtpmp4gpay name=pay1 pt=97 "
        )
    main_launch += ")"
    sub_launch = (
        "( videotestsrc is-live=true pattern=ball ! "
        "video/x-raw,width=640,height=360,framerate=25/1 ! timeoverlay ! "
        "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bitrate=1000 ! "
        "rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )
    aux_launch = (
        "( videotestsrc is-live=true pattern=smpte ! "
        "video/x-raw,width=320,height=240,framerate=25/1 ! timeoverlay ! "
        "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bitrate=500 ! "
        "rtph264pay name=pay0 pt=96 config-interval=-1 "
        "audiotestsrc is-live=true freq=440 volume=0.2 ! audioconvert ! "
        "audio/x-raw,rate=44100,channels=2 ! avenc_aac bitrate=64000 ! "
        "rtpmp4gpay name=pay1 pt=97 )"
    )

    h265_launch = (
        "( videotestsrc is-live=true pattern=ball ! "
        "video/x-raw,width=320,height=240,framerate=25/1 ! "
        "x265enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bitrate=500 ! "
        "rtph265pay name=pay0 pt=96 config-interval=-1 )"
    )

    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    mounts.add_factory("/main_stream", factory(main_launch))
    mounts.add_factory("/sub_stream", factory(sub_launch))
    mounts.add_factory("/aux_stream", factory(aux_launch))
    mounts.add_factory("/h265_stream", factory(h265_launch))
    loops = []
    for spec in args.file:
        name, _, file_path = spec.partition("=")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not os.path.isfile(file_path):
            raise SystemExit(f"camera: --file {spec!r} must be NAME=PATH of an existing file")
        loop_feed = FileLoop(os.path.abspath(file_path))
        loops.append(loop_feed)
        looped, once = file_launches(os.path.abspath(file_path), loop_feed.port)
        mounts.add_factory(f"/file/{name}", factory(looped))
        mounts.add_factory(f"/once/{name}", factory(once, shared=False))

    def on_client(_server, client):
        conn = client.get_connection()
        peer = f"{conn.get_ip()}" if conn is not None else "?"
        seen = set()

        def on_setup(_client, ctx):
            session = ctx.session.get_sessionid() if ctx.session is not None else "?"
            if session not in seen:
                seen.add(session)
                # SETUP names a track ("/main_stream/stream=0"); log the mount point.
                path = re.sub(r"/stream=\d+$", "", ctx.uri.abspath)
                log(f"session path={path} session={session} client={peer}")

        def on_play(_client, ctx):
            session = ctx.session.get_sessionid() if ctx.session is not None else "?"
            log(f"play path={ctx.uri.abspath} session={session}")

        client.connect("setup-request", on_setup)
        client.connect("play-request", on_play)
        client.connect("closed", lambda _c: log(f"closed client={peer}"))

    server.connect("client-connected", on_client)
    if server.attach(None) == 0:
        raise SystemExit(f"camera: cannot listen on {args.host}:{args.port}")
    clip.start()

    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    log(
        f"listening rtsp://{args.host}:{args.port} main={width}x{height}@{num}/{den} "
        f"audio={'aac' if has_audio else 'none'}"
    )
    loop.run()
    for feed in loops:
        feed.stop()
    clip.pipeline.set_state(Gst.State.NULL)


if __name__ == "__main__":
    main()
