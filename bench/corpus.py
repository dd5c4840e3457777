"""Deterministic generator of realistic CloudTrail events for the kvs_sentinel throughput benchmark.

One ``random.Random(seed)`` drives everything, so the same seed yields byte-identical output. Nested
sub-objects (``userIdentity``, ``tlsDetails``, stream info, templates) are shared between records for
speed: treat yielded records as read-only, or deep-copy before mutating.

    python -m bench.corpus --events 200000 --form jsonl --out /tmp/x.jsonl
"""

from __future__ import annotations

import argparse
import base64
import bisect
import gzip
import random
import sys
import time
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from urllib.parse import quote

import orjson

FORMS = ("jsonl", "records", "records-gz", "eventbridge-jsonl")
BASE_TIME = 1793491200  # 2026-11-01T00:00:00Z
ACCT = "111122223333"
KVS = "kinesisvideo.amazonaws.com"
REGIONS = ("us-east-1",) * 7 + ("us-west-2", "us-west-2", "eu-west-1")
KVS_UA = (
    "AWS-SDK-KVS-CPP-CLIENT/3.4.1/1.5.1 GCC/9.4.0 Linux/5.15.0-1051-aws x86_64",
    "AWS-SDK-KVS-CPP-CLIENT/3.4.1/1.5.1 GCC/7.5.0 Linux/4.9.253-tegra aarch64",
    "AWS-SDK-KVS/1.5.1 GCC/8.3.0 Linux/5.10.103-v7l+ armv7l",
)
SDK_UA = (
    "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#5.10.213-201.855.amzn2.x86_64 md/arch#x86_64 "
    "lang/python#3.11.8 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.69",
    "aws-sdk-java/2.25.16 Linux/5.10.214-202.855.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.10+8-LTS "
    "Java/17.0.10 vendor/Amazon.com_Inc. io/sync http/Apache cfg/retry-mode/standard",
    "aws-sdk-js/3.540.0 ua/2.0 os/linux#5.10.213-201.855.amzn2.x86_64 lang/js md/nodejs#18.19.0 "
    "api/kinesis-video#3.540.0",
    "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0-1016-aws exe/x86_64.ubuntu.22 prompt/off "
    "command/kinesisvideo.describe-stream",
    "aws-sdk-go-v2/1.26.1 os/linux lang/go#1.22.1 md/GOOS#linux md/GOARCH#amd64 api/sts#1.28.5",
)
BROWSER_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0"
TLS = (("TLSv1.3", "TLS_AES_128_GCM_SHA256"),) * 4 + (("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"),)
B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
STMTS = {  # IAM statements; most scoped, a few over-broad (kinesisvideo:* / *)
    "scoped": '{"Effect":"Allow","Action":["kinesisvideo:PutMedia","kinesisvideo:GetDataEndpoint",'
    f'"kinesisvideo:DescribeStream"],"Resource":"arn:aws:kinesisvideo:us-east-1:{ACCT}:stream/cam-*/*"}}',
    "s3": '{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],'
    '"Resource":"arn:aws:s3:::kvs-clips-prod/*"}',
    "logs": '{"Effect":"Allow","Action":["logs:CreateLogStream","logs:PutLogEvents"],'
    f'"Resource":"arn:aws:logs:us-east-1:{ACCT}:log-group:/kvs/*"}}',
    "kvs-star": '{"Effect":"Allow","Action":"kinesisvideo:*","Resource":"*"}',
    "star": '{"Effect":"Allow","Action":"*","Resource":"*"}',
}
POLICY_DOCS = [quote('{"Version":"2012-10-17","Statement":[' + s + "]}") for s in STMTS.values()]
POLICY_WEIGHTS = (5, 4, 3, 1, 1)
# RunInstances (~6 KB, the biggest common management event); @I@ instance id, @H@ hex, @T@ epoch seconds
RUN_REQ = """{"instancesSet":{"items":[{"imageId":"ami-0c7217cdde317cfec","minCount":1,"maxCount":1}]},
"userData":"<sensitiveDataRemoved>","instanceType":"c6i.2xlarge","blockDeviceMapping":{"items":[{"deviceName":
"/dev/xvda","ebs":{"volumeSize":100,"deleteOnTermination":true,"volumeType":"gp3","encrypted":true}}]},
"monitoring":{"enabled":false},"disableApiTermination":false,"disableApiStop":false,"clientToken":"@H@-ct",
"networkInterfaceSet":{"items":[{"deviceIndex":0,"subnetId":"subnet-0a1b2c3d4e5f60718","groupSet":{"items":[
{"groupId":"sg-0123456789abcdef0"}]}}]},"iamInstanceProfile":{"name":"kvs-worker"},"tagSpecificationSet":{
"items":[{"resourceType":"instance","tags":@TAGS@},{"resourceType":"volume","tags":@TAGS@}]},"metadataOptions":
{"httpTokens":"required","httpPutResponseHopLimit":2},"creditSpecification":{"cpuCredits":"unlimited"},
"capacityReservationSpecification":{"capacityReservationPreference":"open"},"privateDnsNameOptions":{
"hostnameType":"ip-name","enableResourceNameDnsARecord":false,"enableResourceNameDnsAAAARecord":false}}"""
RUN_TAGS = """[{"key":"Name","value":"kvs-worker-@H@"},{"key":"team","value":"video"},{"key":"env","value":
"prod"},{"key":"cost-center","value":"cc-4411"},{"key":"owner","value":"video-platform@example.com"}]"""
RUN_RESP = """{"requestId":"@H@-rq","reservationId":"r-0@H@aa11bb22","ownerId":"@A@","groupSet":{},
"instancesSet":{"items":[{"instanceId":"@I@","imageId":"ami-0c7217cdde317cfec","currentInstanceBootMode":"uefi",
"instanceState":{"code":0,"name":"pending"},"privateDnsName":"ip-10-1-2-3.ec2.internal","amiLaunchIndex":0,
"productCodes":{},"instanceType":"c6i.2xlarge","launchTime":@T@,"placement":{"availabilityZone":"us-east-1a",
"tenancy":"default"},"monitoring":{"state":"disabled"},"subnetId":"subnet-0a1b2c3d4e5f60718","vpcId":
"vpc-0f1e2d3c4b5a69788","privateIpAddress":"10.1.2.3","stateReason":{"code":"pending","message":"pending"},
"architecture":"x86_64","rootDeviceType":"ebs","rootDeviceName":"/dev/xvda",
"virtualizationType":"hvm","clientToken":"@H@-ct","tagSet":{"items":@TAGS@},"groupSet":{"items":[{"groupId":
"sg-0123456789abcdef0","groupName":"kvs-workers"}]},"sourceDestCheck":true,"hypervisor":"xen",
"networkInterfaceSet":{"items":[{"networkInterfaceId":"eni-0@H@cc33dd44","subnetId":"subnet-0a1b2c3d4e5f60718",
"vpcId":"vpc-0f1e2d3c4b5a69788","ownerId":"@A@","status":"in-use","macAddress":"0e:3d:a1:b2:c3:d4",
"privateIpAddress":"10.1.2.3","privateDnsName":"ip-10-1-2-3.ec2.internal","sourceDestCheck":true,
"interfaceType":"interface","groupSet":{"items":[{"groupId":"sg-0123456789abcdef0","groupName":"kvs-workers"}]},
"attachment":{"attachmentId":"eni-attach-0@H@ee55ff66","deviceIndex":0,"networkCardIndex":0,"status":
"attaching","attachTime":@T@,"deleteOnTermination":true},"privateIpAddressesSet":{"item":[{"privateIpAddress":
"10.1.2.3","privateDnsName":"ip-10-1-2-3.ec2.internal","primary":true}]},"ipv6AddressesSet":{},"tagSet":{}}]},
"iamInstanceProfile":{"arn":"arn:aws:iam::@A@:instance-profile/kvs-worker","id":"AIPA4X7QWERTYUIOPASDF"},
"ebsOptimized":true,"enaSupport":true,"cpuOptions":{"coreCount":4,"threadsPerCore":2},
"capacityReservationSpecification":{"capacityReservationPreference":"open"},"enclaveOptions":{"enabled":false},
"metadataOptions":{"state":"pending","httpTokens":"required","httpPutResponseHopLimit":2,"httpEndpoint":
"enabled","httpProtocolIpv6":"disabled","instanceMetadataTags":"disabled"},"maintenanceOptions":{"autoRecovery":
"default"},"privateDnsNameOptions":{"hostnameType":"ip-name","enableResourceNameDnsARecord":false,
"enableResourceNameDnsAAAARecord":false},"platformDetails":"Linux/UNIX","usageOperation":"RunInstances",
"usageOperationUpdateTime":@T@,"bootMode":"uefi-preferred","hibernationOptions":{"configured":false},
"licenseSet":{},"operator":{"managed":false},"networkPerformanceOptions":{"bandwidthWeighting":"default"},
"blockDeviceMapping":{"items":[{"deviceName":"/dev/xvda","ebs":{"volumeId":"vol-0@H@9a8b7c6d","status":
"attaching","attachTime":@T@,"deleteOnTermination":true}}]}}]}}"""
RUN_TAGS = RUN_TAGS.replace("\n", "")
RUN_REQ, RUN_RESP = (t.replace("\n", "").replace("@TAGS@", RUN_TAGS) for t in (RUN_REQ, RUN_RESP))


def _fmt(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class _Gen:
    def __init__(self, seed: int) -> None:
        self.rng = r = random.Random(seed)
        self.t, self._sec, self._ts = float(BASE_TIME), -1, ""
        self.producers = [self._producer(i) for i in range(240)]
        vr = ("kvs-viewer-web", "kvs-viewer-analytics", "kvs-viewer-mobile")
        self.viewers = [self._role(vr[i % 3], self._session(i), SDK_UA[i % 3], self._ip()) for i in range(40)]
        apps = ("order-api", "etl-batch", "clip-exporter", "ops-automation", "ci-deployer") * 6
        self.apps = [self._role(a, f"{a}-{self._hex(8)}", r.choice(SDK_UA), self._ip()) for a in apps]
        self.admin = self._role("AWSReservedSSO_Admin_4c1a", "alice@example.com", SDK_UA[3], "198.51.100.17")
        self.admin[0]["sessionContext"]["attributes"]["mfaAuthenticated"] = "true"
        name = "legacy-camera-uploader"
        user = {"type": "IAMUser", "principalId": "AIDA" + self._key(17)}
        user["arn"] = f"arn:aws:iam::{ACCT}:user/{name}"
        user |= {"accountId": ACCT, "accessKeyId": "AKIA" + self._key(16), "userName": name}
        self.iam_user = (user, "203.0.113.54", KVS_UA[0])
        root = {"type": "Root", "principalId": ACCT, "arn": f"arn:aws:iam::{ACCT}:root", "accountId": ACCT}
        attrs = {"creationDate": _fmt(BASE_TIME - 900), "mfaAuthenticated": "false"}
        root |= {"accessKeyId": "ASIA" + self._key(16), "sessionContext": {"attributes": attrs}}
        self.root = (root, "192.0.2.77", BROWSER_UA)
        kvs = {self.put_media: 30, self.gde_put: 20, self.describe_prod: 7, self.get_media: 7}
        kvs[self.gde_get] = 11
        kvs |= {self.hls: 6, self.list_fragments: 4, self.get_clip: 2, self.kvs_admin: 2, self.violation: 2}
        kvs |= {self.create_chan: 0.5, self.chan_endpoint: 4, self.connect_master: 3, self.describe_chan: 1.5}
        other = {self.s3: 18, self.assume_role: 8, self.caller_id: 3, self.ec2: 10, self.run_instances: 0.3}
        other |= {self.iam_policy: 0.8, self.iam_attach: 0.4, self.iam_read: 2, self.lookup_events: 1}
        other |= {self.trail_tamper: 0.05, self.put_rule: 0.5, self.disable_rule: 0.05, self.sqs: 3}
        other[self.sns] = 2
        other |= {self.kms: 8, self.lambda_invoke: 3, self.logs: 2, self.service_event: 3}
        ks, os_ = sum(kvs.values()), sum(other.values())
        table = [(f, w * 35 / ks) for f, w in kvs.items()] + [(f, w * 65 / os_) for f, w in other.items()]
        self.funcs: list[Callable[[], dict]] = [f for f, _ in table]
        self.cum = [sum(w for _, w in table[: i + 1]) for i in range(len(table))]

    # ---- ids and principals ------------------------------------------------------------------------
    def _key(self, n: int) -> str:
        return "".join(self.rng.choices(B32, k=n))

    def _hex(self, n: int) -> str:
        return f"{self.rng.getrandbits(4 * n):0{n}x}"

    def uuid(self) -> str:  # uuid4 drawn from the seeded RNG
        h = f"{self.rng.getrandbits(128) & ~(0xF000 << 64 | 0xC000 << 48) | 0x4000 << 64 | 0x8000 << 48:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def _session(self, i: int) -> str:
        return f"i-0{self._hex(16)}" if i % 3 == 1 else f"viewer-{self._hex(12)}"

    def _ip(self, trusted: bool = True) -> str:
        r = self.rng
        if trusted:
            if r.random() < 0.7:
                return f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"
            return f"198.51.100.{r.randrange(1, 255)}"
        if r.random() < 0.3:
            return f"2001:db8:{r.randrange(65536):x}:{r.randrange(65536):x}::{r.randrange(1, 65536):x}"
        return f"{r.choice(('203.0.113', '192.0.2', '100.24.17', '54.210.88'))}.{r.randrange(1, 255)}"

    def _role(self, role: str, session: str, ua: str, ip: str) -> tuple:
        rid, arn = "AROA" + self._key(17), f"arn:aws:iam::{ACCT}:role/{role}"
        issuer = {"type": "Role", "principalId": rid, "arn": arn, "accountId": ACCT, "userName": role}
        attrs = {"creationDate": _fmt(BASE_TIME - self.rng.randrange(60, 3500)), "mfaAuthenticated": "false"}
        ctx = {"sessionIssuer": issuer, "webIdFederationData": {}, "attributes": attrs}
        ident = {"type": "AssumedRole", "principalId": f"{rid}:{session}"}
        ident["arn"] = f"arn:aws:sts::{ACCT}:assumed-role/{role}/{session}"
        ident |= {"accountId": ACCT, "accessKeyId": "ASIA" + self._key(16), "sessionContext": ctx}
        return ident, ip, ua

    def _producer(self, i: int) -> tuple:
        r, name = self.rng, f"cam-{i:04d}"
        role = "kvs-producer-camera" if i % 5 else "kvs-producer-doorbell"
        ident, ip, ua = self._role(role, name, r.choice(KVS_UA), self._ip(trusted=r.random() > 0.03))
        arn = f"arn:aws:kinesisvideo:us-east-1:{ACCT}:stream/{name}/{1767225600000 + i * 7919}"
        chan = f"arn:aws:kinesisvideo:us-east-1:{ACCT}:channel/{name}-webrtc/{1767225600000 + i * 31}"
        info = {"deviceName": name, "streamName": name, "streamARN": arn, "mediaType": "video/h264"}
        info |= {"kmsKeyId": f"arn:aws:kms:us-east-1:{ACCT}:alias/aws/kinesisvideo", "version": self._key(20)}
        info |= {"status": "ACTIVE", "creationTime": "Jan 1, 2026 12:00:00 AM", "dataRetentionInHours": 168}
        return ident, ip, ua, name, arn, {"streamInfo": info}, chan

    # ---- record assembly ---------------------------------------------------------------------------
    def rec(self, who, source, name, req, resp=None, ro=True, data=False, res=None, **kw) -> dict:
        r, (ident, ip, ua) = self.rng, who[:3]
        self.t += r.random() * 0.02
        if int(self.t) != self._sec:
            self._sec = int(self.t)
            self._ts = _fmt(self._sec)
        region, svc = kw.get("region") or r.choice(REGIONS), source.partition(".")[0]
        d = {"eventVersion": "1.09" if r.random() < 0.6 else "1.08", "userIdentity": ident}
        d |= {"eventTime": self._ts, "eventSource": source, "eventName": name, "awsRegion": region}
        d |= {"sourceIPAddress": ip, "userAgent": ua}
        if err := kw.get("err"):
            d["errorCode"], resp = err, None
            d["errorMessage"] = f"User: {ident['arn']} is not authorized to perform: {svc}:{name}"
        d |= {"requestParameters": req, "responseElements": resp}
        if "extra" in kw:
            d["additionalEventData"] = kw["extra"]
        d |= {"requestID": kw.get("rid") or self.uuid(), "eventID": self.uuid(), "readOnly": ro}
        if res:
            d["resources"] = res
        d |= {"eventType": "AwsApiCall", "managementEvent": not data, "recipientAccountId": ACCT}
        if ip.startswith("10."):
            d["vpcEndpointId"] = "vpce-0a1b2c3d4e5f60718"
        d["eventCategory"] = "Data" if data else "Management"
        if ip[0].isdigit() or ":" in ip:  # a real client, not "AWS Internal" / an AWS service principal
            v, c = r.choice(TLS)
            host = kw.get("host") or f"{svc}.{region}.amazonaws.com"
            d["tlsDetails"] = {"tlsVersion": v, "cipherSuite": c, "clientProvidedHostHeader": host}
        return d

    # ---- Kinesis Video Streams (~35%) --------------------------------------------------------------
    def _kvs(self, who, name, req, resp=None, arn=None, data=False, **kw) -> dict:
        res = [{"accountId": ACCT, "type": "AWS::KinesisVideo::Stream", "ARN": arn}] if data else None
        if data and "host" not in kw:
            kw["host"] = f"s-{self._hex(8)}.kinesisvideo.us-east-1.amazonaws.com"
        return self.rec(who, KVS, name, req, resp, data=data, res=res, region="us-east-1", **kw)

    def _sreq(self, p: tuple, **extra) -> dict:
        return ({"streamARN": p[4]} if self.rng.random() < 0.3 else {"streamName": p[3]}) | extra

    def _pv(self) -> tuple:
        return self.rng.choice(self.producers), self.rng.choice(self.viewers)

    def put_media(self, who=None) -> dict:
        p = self.rng.choice(self.producers)
        req = self._sreq(p, fragmentTimecodeType="ABSOLUTE", producerStartTimestamp=round(self.t - 30, 3))
        return self._kvs(who or p, "PutMedia", req, arn=p[4], data=True, ro=False)

    def gde_put(self, api="PUT_MEDIA") -> dict:
        p = self.rng.choice(self.producers)
        ep = {"dataEndpoint": f"https://s-{self._hex(8)}.kinesisvideo.us-east-1.amazonaws.com"}
        return self._kvs(p, "GetDataEndpoint", self._sreq(p, aPIName=api), ep)

    def describe_prod(self, who=None) -> dict:
        p = self.rng.choice(self.producers)
        return self._kvs(who or p, "DescribeStream", self._sreq(p), p[5])

    def get_media(self, producer=False) -> dict:
        p, v = self._pv()
        req = self._sreq(p, startSelector={"startSelectorType": self.rng.choice(("NOW", "EARLIEST"))})
        who = self.rng.choice(self.producers) if producer else v
        return self._kvs(who, "GetMedia", req, arn=p[4], data=True)

    def gde_get(self) -> dict:
        (p, v), api = self._pv(), self.rng.choice(("GET_MEDIA", "GET_HLS_STREAMING_SESSION_URL", "GET_CLIP"))
        ep = {"dataEndpoint": f"https://b-{self._hex(8)}.kinesisvideo.us-east-1.amazonaws.com"}
        return self._kvs(v, "GetDataEndpoint", self._sreq(p, aPIName=api), ep)

    def hls(self) -> dict:
        p, v = self._pv()
        sel = {"fragmentSelectorType": "SERVER_TIMESTAMP"}
        req = self._sreq(p, playbackMode="LIVE", hLSFragmentSelector=sel, containerFormat="FRAGMENTED_MP4")
        req |= {"discontinuityMode": "ALWAYS", "displayFragmentTimestamp": "NEVER", "expires": 300}
        token = base64.urlsafe_b64encode(self.rng.getrandbits(1536).to_bytes(192, "big")).decode()
        url = f"https://b-{self._hex(8)}.kinesisvideo.us-east-1.amazonaws.com/hls/v1/"
        resp = {"hLSStreamingSessionURL": f"{url}getHLSMasterPlaylist.m3u8?SessionToken={token}"}
        return self._kvs(v, "GetHLSStreamingSessionURL", req, resp, arn=p[4], data=True)

    def _range(self, kind: str, back: float) -> dict:
        rng = {"startTimestamp": round(self.t - back, 3), "endTimestamp": round(self.t - back / 2, 3)}
        return {"fragmentSelectorType": kind, "timestampRange": rng}

    def list_fragments(self) -> dict:
        (p, v), sel = self._pv(), self._range("SERVER_TIMESTAMP", 600)
        req = self._sreq(p, maxResults=100, fragmentSelector=sel)
        return self._kvs(v, "ListFragments", req, arn=p[4], data=True)

    def get_clip(self) -> dict:
        (p, v), sel = self._pv(), self._range("PRODUCER_TIMESTAMP", 120)
        return self._kvs(v, "GetClip", self._sreq(p, clipFragmentSelector=sel), arn=p[4], data=True)

    def create_chan(self) -> dict:
        p = self.rng.choice(self.producers)
        req = {"channelName": p[3] + "-webrtc", "channelType": "SINGLE_MASTER"}
        req["singleMasterConfiguration"] = {"messageTtlSeconds": 60}
        who = self.rng.choice(self.apps)
        return self._kvs(who, "CreateSignalingChannel", req, {"channelARN": p[6]}, ro=False)

    def chan_endpoint(self) -> dict:
        (p, v), h = self._pv(), self._hex(8)
        role = self.rng.choice(("MASTER", "VIEWER"))
        cfg = {"protocols": ["WSS", "HTTPS"], "role": role}
        req = {"channelARN": p[6], "singleMasterChannelEndpointConfiguration": cfg}
        eps = [("WSS", f"wss://m-{h}.kinesisvideo.us-east-1.amazonaws.com")]
        eps.append(("HTTPS", f"https://r-{h}.kinesisvideo.us-east-1.amazonaws.com"))
        resp = {"resourceEndpointList": [{"protocol": a, "resourceEndpoint": b} for a, b in eps]}
        return self._kvs(p if role == "MASTER" else v, "GetSignalingChannelEndpoint", req, resp)

    def connect_master(self) -> dict:
        p, host = self.rng.choice(self.producers), f"m-{self._hex(8)}.kinesisvideo.us-east-1.amazonaws.com"
        return self._kvs(p, "ConnectAsMaster", {"channelARN": p[6]}, arn=p[6], data=True, host=host)

    def describe_chan(self) -> dict:
        p, who = self.rng.choice(self.producers), self.rng.choice(self.viewers + self.apps)
        return self._kvs(who, "DescribeSignalingChannel", {"channelName": p[3] + "-webrtc"})

    def kvs_admin(self) -> dict:
        p, x = self.rng.choice(self.producers), self.rng.random()
        if x < 0.6:
            return self._kvs(self.rng.choice(self.apps), "ListStreams", {"maxResults": 100})
        if x < 0.8:
            req = {"streamName": p[3], "mediaType": "video/h264", "dataRetentionInHours": 168}
            req["tags"] = {"team": "video", "site": f"site-{int(p[3][4:]) % 12:02d}"}
            return self._kvs(self.admin, "CreateStream", req, {"streamARN": p[4]}, ro=False)
        return self._kvs(self.admin, "TagStream", {"streamARN": p[4], "tags": {"env": "prod"}}, ro=False)

    def violation(self) -> dict:  # ~2% of KVS events break a best practice
        x, p = self.rng.randrange(8), self.rng.choice(self.producers)
        if x == 0:
            return self.get_media(producer=True)
        if x == 1:
            return self.gde_put(api="GET_MEDIA")
        if x == 2:
            return self.put_media(self.iam_user)
        if x == 3:
            return self.describe_prod(self.iam_user)
        if x == 4:
            if self.rng.random() < 0.5:
                return self._kvs(self.root, "ListStreams", {"maxResults": 10})
            return self._kvs(self.root, "DeleteStream", {"streamARN": p[4]}, ro=False)
        if x == 5:
            return self._kvs(p, "DeleteStream", {"streamARN": p[4]}, ro=False)
        if x == 6:
            req = {"streamName": p[3], "currentVersion": p[5]["streamInfo"]["version"]}
            req |= {"operation": "DECREASE_DATA_RETENTION", "dataRetentionChangeInHours": 167}
            return self._kvs(p, "UpdateDataRetention", req, ro=False)
        other = self.rng.choice(self.producers)
        return self._kvs(p, "DescribeStream", {"streamName": other[3]}, err="AccessDeniedException")

    # ---- everything else (~65%) --------------------------------------------------------------------
    def _app(self, source, name, req, resp=None, **kw) -> dict:
        return self.rec(kw.pop("who", None) or self.rng.choice(self.apps), source, name, req, resp, **kw)

    def s3(self) -> dict:
        r, get = self.rng, self.rng.random() < 0.7
        bucket = r.choice(("kvs-clips-prod", "app-assets-prod", "etl-staging"))
        key = f"clips/{self._hex(12)}.mp4"
        size, host = r.randrange(10**4, 10**7), f"{bucket}.s3.us-east-1.amazonaws.com"
        extra = {"SignatureVersion": "SigV4", "CipherSuite": "TLS_AES_128_GCM_SHA256"}
        extra |= {"bytesTransferredIn": 0 if get else size, "AuthenticationMethod": "AuthHeader"}
        extra["x-amz-id-2"] = base64.b64encode(r.getrandbits(456).to_bytes(57, "big")).decode()
        extra["bytesTransferredOut"] = size if get else 0
        res = [{"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{key}"}]
        res.append({"accountId": ACCT, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket}"})
        req = {"bucketName": bucket, "Host": host, "key": key}
        kw = {"rid": self._hex(16).upper(), "extra": extra, "host": host, "region": "us-east-1"}
        name = "GetObject" if get else "PutObject"
        return self._app("s3.amazonaws.com", name, req, ro=get, data=True, res=res, **kw)

    def assume_role(self) -> dict:
        r = self.rng
        svc = r.choice(("ecs-tasks.amazonaws.com", "lambda.amazonaws.com", "ec2.amazonaws.com"))
        role, sess = r.choice(("kvs-producer-camera", "etl-batch", "order-api")), self._hex(16)
        req = {"roleArn": f"arn:aws:iam::{ACCT}:role/{role}", "roleSessionName": sess}
        req["durationSeconds"] = 3600
        creds = {"accessKeyId": "ASIA" + self._key(16), "sessionToken": "IQoJb3JpZ2luX2VjE" + self._key(300)}
        creds["expiration"] = "Nov 1, 2026, 6:00:00 AM"
        arn = f"arn:aws:sts::{ACCT}:assumed-role/{role}/{sess}"
        user = {"assumedRoleId": f"AROA{self._key(17)}:{sess}", "arn": arn}
        resp = {"credentials": creds, "assumedRoleUser": user}
        who = ({"type": "AWSService", "invokedBy": svc}, svc, svc)
        return self._app("sts.amazonaws.com", "AssumeRole", req, resp, who=who)

    def caller_id(self) -> dict:
        who = self.rng.choice(self.viewers + self.apps)
        return self._app("sts.amazonaws.com", "GetCallerIdentity", None, who=who)

    def ec2(self) -> dict:
        name = self.rng.choice(("Instances", "SecurityGroups", "Vpcs", "Subnets", "NetworkInterfaces"))
        flt = {"items": [{"name": "tag:team", "valueSet": {"items": [{"value": "video"}]}}]}
        return self._app("ec2.amazonaws.com", "Describe" + name, {"maxResults": 1000, "filterSet": flt})

    def run_instances(self) -> dict:
        h, t, iid = self._hex(8), str(int(self.t) * 1000), f"i-0{self._hex(16)}"
        resp = RUN_RESP.replace("@I@", iid).replace("@H@", h).replace("@T@", t).replace("@A@", ACCT)
        req = orjson.loads(RUN_REQ.replace("@H@", h))
        return self._app("ec2.amazonaws.com", "RunInstances", req, orjson.loads(resp), ro=False)

    def iam_policy(self) -> dict:
        doc = self.rng.choices(POLICY_DOCS, POLICY_WEIGHTS)[0]
        who, name = self.rng.choice([self.admin, *self.apps[-12:]]), f"kvs-policy-{self._hex(6)}"
        if self.rng.random() < 0.5:
            role = self.rng.choice(("kvs-producer-camera", "kvs-viewer-web", "etl-batch"))
            req = {"roleName": role, "policyName": name, "policyDocument": doc}
            return self._app("iam.amazonaws.com", "PutRolePolicy", req, ro=False, region="us-east-1", who=who)
        pol = {"policyName": name, "policyId": "ANPA" + self._key(17), "arn": f"arn:aws:iam::{ACCT}:policy/"}
        pol["arn"] += name
        pol |= {"path": "/", "defaultVersionId": "v1", "attachmentCount": 0, "isAttachable": True}
        pol |= {"createDate": "Nov 1, 2026, 1:00:00 AM", "updateDate": "Nov 1, 2026, 1:00:00 AM"}
        req = {"policyName": name, "policyDocument": doc, "description": "KVS access"}
        return self._app("iam.amazonaws.com", "CreatePolicy", req, {"policy": pol}, ro=False, who=who)

    def iam_attach(self) -> dict:
        pol = self.rng.choice(("KinesisVideoStreamsFullAccess", "KinesisVideoStreamsReadOnlyAccess"))
        pol = "AdministratorAccess" if self.rng.random() < 0.1 else "Amazon" + pol
        req = {"roleName": self.rng.choice(("kvs-producer-camera", "kvs-viewer-web"))}
        req["policyArn"] = "arn:aws:iam::aws:policy/" + pol
        return self._app("iam.amazonaws.com", "AttachRolePolicy", req, ro=False, who=self.admin)

    def iam_read(self) -> dict:
        name = self.rng.choice(("GetRole", "ListRoles", "ListAttachedRolePolicies", "GetPolicyVersion"))
        req = {"maxItems": 100} if name == "ListRoles" else {"roleName": "kvs-producer-camera"}
        return self._app("iam.amazonaws.com", name, req, region="us-east-1")

    def lookup_events(self) -> dict:
        req = {"lookupAttributes": [{"attributeKey": "EventSource", "attributeValue": KVS}], "maxResults": 50}
        return self._app("cloudtrail.amazonaws.com", "LookupEvents", req)

    def trail_tamper(self) -> dict:
        trail = f"arn:aws:cloudtrail:us-east-1:{ACCT}:trail/org-trail"
        if self.rng.random() < 0.4:
            req = {"name": trail}
            return self._app("cloudtrail.amazonaws.com", "StopLogging", req, ro=False, who=self.admin)
        sel = [{"readWriteType": "WriteOnly", "includeManagementEvents": True, "dataResources": []}]
        req = {"trailName": trail, "eventSelectors": sel}
        return self._app("cloudtrail.amazonaws.com", "PutEventSelectors", req, req, ro=False, who=self.admin)

    def put_rule(self) -> dict:
        pat = '{"source":["aws.kinesisvideo"],"detail-type":["AWS API Call via CloudTrail"]}'
        req = {"name": "kvs-sentinel-kvs", "eventPattern": pat, "state": "ENABLED"}
        resp = {"ruleArn": f"arn:aws:events:us-east-1:{ACCT}:rule/kvs-sentinel-kvs"}
        return self._app("events.amazonaws.com", "PutRule", req, resp, ro=False)

    def disable_rule(self) -> dict:
        req = {"name": "kvs-sentinel-kvs", "eventBusName": "default"}
        return self._app("events.amazonaws.com", "DisableRule", req, ro=False, who=self.admin)

    def sqs(self) -> dict:
        name = self.rng.choice(("SendMessage", "ReceiveMessage", "DeleteMessage"))
        arn = f"arn:aws:sqs:us-east-1:{ACCT}:kvs-clip-jobs"
        req = {"queueUrl": f"https://sqs.us-east-1.amazonaws.com/{ACCT}/kvs-clip-jobs"}
        res = [{"accountId": ACCT, "type": "AWS::SQS::Queue", "ARN": arn}]
        return self._app("sqs.amazonaws.com", name, req, ro=name == "ReceiveMessage", data=True, res=res)

    def sns(self) -> dict:
        req = {"topicArn": f"arn:aws:sns:us-east-1:{ACCT}:kvs-alerts", "subject": "motion detected"}
        return self._app("sns.amazonaws.com", "Publish", req, {"messageId": self.uuid()}, ro=False)

    def kms(self) -> dict:
        r, key = self.rng, f"arn:aws:kms:us-east-1:{ACCT}:key/{self.uuid()}"
        ctx = {"aws:kinesisvideo:arn": r.choice(self.producers)[4]}
        req = {"encryptionAlgorithm": "SYMMETRIC_DEFAULT", "keyId": key, "encryptionContext": ctx}
        who = r.choice(self.apps)
        if r.random() < 0.6:  # called by KVS / S3 on behalf of a principal
            svc = r.choice((KVS, "s3.amazonaws.com"))
            who = ({**r.choice(self.producers)[0], "invokedBy": svc}, svc, svc)
        res = [{"accountId": ACCT, "type": "AWS::KMS::Key", "ARN": key}]
        return self._app("kms.amazonaws.com", r.choice(("Decrypt", "GenerateDataKey")), req, res=res, who=who)

    def lambda_invoke(self) -> dict:
        fn = f"arn:aws:lambda:us-east-1:{ACCT}:function:kvs-frame-extractor"
        res = [{"accountId": ACCT, "type": "AWS::Lambda::Function", "ARN": fn}]
        return self._app("lambda.amazonaws.com", "Invoke", {"functionName": fn}, ro=False, data=True, res=res)

    def logs(self) -> dict:
        stream = f"cam-{self.rng.randrange(240):04d}/{self._hex(32)}"
        req = {"logGroupName": "/kvs/producer", "logStreamName": stream}
        return self._app("logs.amazonaws.com", "CreateLogStream", req, ro=False)

    def service_event(self) -> dict:
        svc, key = "kms.amazonaws.com", f"arn:aws:kms:us-east-1:{ACCT}:key/{self.uuid()}"
        res = [{"accountId": ACCT, "type": "AWS::KMS::Key", "ARN": key}]
        who = ({"accountId": ACCT, "invokedBy": svc}, "AWS Internal", "AWS Internal")
        d = self._app(svc, "RotateKey", None, ro=False, res=res, extra={"keyId": key}, who=who)
        d["eventType"], d["sharedEventID"] = "AwsServiceEvent", self.uuid()
        return d

    def next(self) -> dict:
        return self.funcs[bisect.bisect_right(self.cum, self.rng.random() * self.cum[-1])]()


def generate_events(count: int, seed: int = 7) -> Iterator[dict]:
    """Yield ``count`` bare CloudTrail records, deterministic for ``seed`` (treat them as read-only)."""
    g = _Gen(seed)
    for _ in range(count):
        yield g.next()


def _envelopes(count: int, seed: int) -> Iterator[dict]:
    ids = random.Random(seed ^ 0x5EB)  # own RNG, so `detail` equals the bare record for the same seed
    for rec in generate_events(count, seed):
        h = f"{ids.getrandbits(128):032x}"
        env = {"version": "0", "id": f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"}
        env["detail-type"] = "AWS API Call via CloudTrail"
        env["source"] = "aws." + rec["eventSource"].split(".")[0]
        env |= {"account": rec["recipientAccountId"], "time": rec["eventTime"], "region": rec["awsRegion"]}
        env |= {"resources": [], "detail": rec}
        yield env


def _chunks(it: Iterator[dict], n: int = 2000) -> Iterator[list[dict]]:
    while chunk := list(islice(it, n)):
        yield chunk


def write_corpus(path: str | Path, count: int, form: str = "jsonl", seed: int = 7) -> int:
    """Stream ``count`` events to ``path`` as ``form``; return bytes written to disk (compressed for -gz)."""
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; expected one of {FORMS}")
    path, dumps = Path(path), orjson.dumps
    src = _envelopes(count, seed) if form == "eventbridge-jsonl" else generate_events(count, seed)
    with path.open("wb") as raw:
        out = gzip.GzipFile("", "wb", 6, raw, mtime=0) if form == "records-gz" else raw
        try:
            if form.endswith("jsonl"):
                for chunk in _chunks(src):
                    out.write(b"\n".join(map(dumps, chunk)) + b"\n")
            else:  # one compact {"Records":[...]} document, like a CloudTrail S3 object
                out.write(b'{"Records":[')
                for i, chunk in enumerate(_chunks(src)):
                    out.write((b"," if i else b"") + b",".join(map(dumps, chunk)))
                out.write(b"]}")
        finally:
            if out is not raw:
                out.close()
    return path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.corpus", description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--form", choices=FORMS, default="jsonl")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    size = write_corpus(a.out, a.events, a.form, a.seed)
    dt = time.perf_counter() - t0
    rate = f"{a.events / dt:,.0f} events/s, {size / max(a.events, 1):,.0f} B/event on disk"
    print(f"wrote {a.events} {a.form} events to {a.out} in {dt:.1f}s ({rate})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
