import { CfnOutput, Duration, Stack, type StackProps } from 'aws-cdk-lib';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as elasticache from 'aws-cdk-lib/aws-elasticache';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import { renderBuilderUserData, type BuilderArch } from '../builder/builderUserData.js';
import { renderGatewayUserData } from './gatewayUserData.js';

// Slipway in one AWS account: gateway replicas in an Auto Scaling group across two availability
// zones behind a network load balancer that passes TCP 443 through (the gateways terminate TLS
// themselves: agent links upgrade the connection, which an HTTP load balancer would not pass),
// ElastiCache Redis with TLS for the routing table, and launch templates from which the gateways
// launch builder VMs. Nothing is looked up at synthesis: AMIs come from public SSM parameters that
// CloudFormation resolves at deploy time, availability zones from Fn::GetAZs.

/** Tags of the EC2 fleet (gateway/src/fleet/ec2FleetProvider.ts). */
export const FLEET_TAG = 'slipway:fleet';
const MUTABLE_TAGS = ['slipway:project', 'slipway:stopped-at'];

export interface Artifact {
  url: string;
  sha256: string;
}

export interface SlipwayStackProps extends StackProps {
  /** The builders' slipway:fleet tag; the gateways manage only instances carrying it. */
  fleetName: string;
  /** The DNS name clients and agents use for the load balancer (on the gateway's certificate). */
  gatewayDomainName: string;
  /** Gateway bundle (deploy/docker/Dockerfile.gateway, target gateway-bundle) for gatewayArch. */
  gatewayBundle: Artifact;
  /** Agent bundles (deploy/docker/Dockerfile.agent, target agent-bundle) per architecture. */
  agentBundles: Record<BuilderArch, Artifact>;
  /** SHA-256 of the pinned BuildKit release tarball per architecture. */
  buildkitSha256: Record<BuilderArch, string>;
  /** PEM of the private CA of the gateway certificate, when it is not publicly trusted. */
  gatewayCaPem?: string;
  /** Gateway replicas (default 2, one per availability zone). */
  gatewayCount?: number;
  gatewayArch?: BuilderArch;
  gatewayInstanceType?: string;
  /** Builder instance types with local NVMe (the `d` in c6id, c7gd): default c6id.2xlarge and c7gd.2xlarge. */
  builderInstanceTypes?: Record<BuilderArch, string>;
  /** The EBS cache volume each builder keeps across stop/start (GiB, default 200). */
  cacheVolumeGiB?: number;
  /** Public SSM parameters naming a Debian 13 AMI per architecture. */
  amiSsmParameters?: Record<BuilderArch, string>;
  redisNodeType?: string;
  natGateways?: number;
  /** Gateway drain on SIGTERM (default 300000 ms); the load balancer's deregistration delay follows it. */
  shutdownGraceMs?: number;
  /** Builder drain on stop (default 600000 ms). */
  drainGraceMs?: number;
  maxBuildsPerBuilder?: number;
  warmPoolSize?: number;
  maxInstancesPerPlatform?: number;
}

const DEFAULT_BUILDER_TYPES: Record<BuilderArch, string> = { amd64: 'c6id.2xlarge', arm64: 'c7gd.2xlarge' };
const DEFAULT_AMI_PARAMETERS: Record<BuilderArch, string> = {
  amd64: '/aws/service/debian/release/13/latest/amd64',
  arm64: '/aws/service/debian/release/13/latest/arm64',
};
const ARCHES: readonly BuilderArch[] = ['amd64', 'arm64'];

/** Instance types with local NVMe instance storage: the family ends in d (c6id, c7gd, m6gd, ...). */
export function hasLocalNvme(instanceType: string): boolean {
  const attributes = /^[a-z]+\d+([a-z-]*)\.[a-z0-9]+$/.exec(instanceType)?.[1];
  return attributes !== undefined && attributes.includes('d');
}

export class SlipwayStack extends Stack {
  readonly loadBalancer: elbv2.NetworkLoadBalancer;
  readonly builderTemplates: Record<BuilderArch, ec2.LaunchTemplate>;

  constructor(scope: Construct, id: string, props: SlipwayStackProps) {
    super(scope, id, props);
    const builderTypes = props.builderInstanceTypes ?? DEFAULT_BUILDER_TYPES;
    for (const arch of ARCHES) {
      if (!hasLocalNvme(builderTypes[arch])) {
        throw new Error(`builderInstanceTypes.${arch} '${builderTypes[arch]}' has no local NVMe storage; pick a type whose family ends in d (c6id, c7gd, ...)`);
      }
    }
    const amiParameters = props.amiSsmParameters ?? DEFAULT_AMI_PARAMETERS;
    const shutdownGraceMs = props.shutdownGraceMs ?? 300_000;
    const gatewayCount = props.gatewayCount ?? 2;
    const gatewayArch = props.gatewayArch ?? 'arm64';

    const vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: 2,
      natGateways: props.natGateways ?? 2,
      subnetConfiguration: [
        { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
        { name: 'private', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 20 },
      ],
    });
    const privateSubnets = vpc.selectSubnets({ subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS });

    // ---- security groups: 443 is the only port open to the world ------------------------------
    const gatewaySg = new ec2.SecurityGroup(this, 'GatewaySecurityGroup', {
      vpc,
      description: 'Slipway gateways: TLS 443 from clients and agents (through the NLB, client addresses preserved) and from other replicas',
      allowAllOutbound: true,
    });
    gatewaySg.addIngressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'Slipway TLS port');
    const redisSg = new ec2.SecurityGroup(this, 'RedisSecurityGroup', { vpc, description: 'Slipway routing table: Redis from the gateways only', allowAllOutbound: false });
    redisSg.addIngressRule(gatewaySg, ec2.Port.tcp(6379), 'gateways');
    // Builders dial out to the gateway and to registries; nothing may connect to them.
    const builderSg = new ec2.SecurityGroup(this, 'BuilderSecurityGroup', { vpc, description: 'Slipway builders: no inbound traffic at all', allowAllOutbound: true });

    // ---- Redis: the shared routing table, TLS in transit ----------------------------------------
    const redisSubnets = new elasticache.CfnSubnetGroup(this, 'RedisSubnets', {
      description: 'Slipway routing table',
      subnetIds: privateSubnets.subnetIds,
    });
    const redis = new elasticache.CfnReplicationGroup(this, 'Redis', {
      replicationGroupDescription: 'Slipway routing table',
      engine: 'redis',
      engineVersion: '7.1',
      cacheNodeType: props.redisNodeType ?? 'cache.t4g.small',
      numCacheClusters: 2,
      automaticFailoverEnabled: true,
      multiAzEnabled: true,
      transitEncryptionEnabled: true,
      transitEncryptionMode: 'required',
      atRestEncryptionEnabled: true,
      cacheSubnetGroupName: redisSubnets.ref,
      securityGroupIds: [redisSg.securityGroupId],
    });
    const redisUrl = `rediss://${redis.attrPrimaryEndPointAddress}:${redis.attrPrimaryEndPointPort}`;

    // ---- builder launch templates ---------------------------------------------------------------
    // No instance profile: a builder needs no AWS API, and build steps can never borrow a role.
    this.builderTemplates = {} as Record<BuilderArch, ec2.LaunchTemplate>;
    const builderSubnet = privateSubnets.subnets[0]!;
    for (const arch of ARCHES) {
      const template = new ec2.LaunchTemplate(this, `Builder${arch === 'amd64' ? 'Amd64' : 'Arm64'}Template`, {
        launchTemplateName: `${props.fleetName}-builder-${arch}`,
        machineImage: ec2.MachineImage.fromSsmParameter(amiParameters[arch]),
        instanceType: new ec2.InstanceType(builderTypes[arch]),
        userData: ec2.UserData.custom(
          renderBuilderUserData({
            arch,
            gatewayUrl: `https://${props.gatewayDomainName}`,
            gatewayLinks: gatewayCount,
            maxBuilds: props.maxBuildsPerBuilder ?? 4,
            drainGraceMs: props.drainGraceMs ?? 600_000,
            buildkit: { sha256: props.buildkitSha256[arch] },
            agentBundle: props.agentBundles[arch],
            ...(props.gatewayCaPem !== undefined ? { gatewayCaPem: props.gatewayCaPem } : {}),
          }),
        ),
        requireImdsv2: true,
        // Build containers on their own network are one hop further: out of reach of IMDS.
        httpPutResponseHopLimit: 1,
        instanceMetadataTags: false,
        blockDevices: [
          { deviceName: '/dev/xvda', volume: ec2.BlockDeviceVolume.ebs(30, { volumeType: ec2.EbsDeviceVolumeType.GP3, encrypted: true }) },
          // The project's cache: kept across stop/start, gone with the instance.
          {
            deviceName: '/dev/sdf',
            volume: ec2.BlockDeviceVolume.ebs(props.cacheVolumeGiB ?? 200, { volumeType: ec2.EbsDeviceVolumeType.GP3, encrypted: true, deleteOnTermination: true }),
          },
        ],
      });
      // RunInstances from the gateway names only the template: the subnet and security group must be in it.
      const cfn = template.node.defaultChild as ec2.CfnLaunchTemplate;
      cfn.addPropertyOverride('LaunchTemplateData.NetworkInterfaces', [
        { DeviceIndex: 0, SubnetId: builderSubnet.subnetId, Groups: [builderSg.securityGroupId], AssociatePublicIpAddress: false },
      ]);
      this.builderTemplates[arch] = template;
    }

    // ---- gateway secret and role ---------------------------------------------------------------
    const secret = new secretsmanager.Secret(this, 'GatewaySecret', {
      description: 'Slipway gateway keys: JSON with tlsCertPem, tlsKeyPem, tokenJwks, signingKey, instanceIdentityCerts, optional internalCaPem (docs/OPERATIONS.md)',
    });
    const gatewayRole = new iam.Role(this, 'GatewayRole', { assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com') });
    const ec2Arn = (resource: string): string => this.formatArn({ service: 'ec2', resource, resourceName: '*' });
    const fleetTagged = { StringEquals: { [`aws:ResourceTag/${FLEET_TAG}`]: props.fleetName } };
    const policy = new iam.Policy(this, 'GatewayFleetPolicy', {
      statements: [
        // Launch: the new instance and its volumes must carry this fleet's tag.
        new iam.PolicyStatement({
          sid: 'LaunchTaggedBuilders',
          actions: ['ec2:RunInstances'],
          resources: [ec2Arn('instance'), ec2Arn('volume')],
          conditions: { StringEquals: { [`aws:RequestTag/${FLEET_TAG}`]: props.fleetName } },
        }),
        // ... from the builder templates only, into the builder subnet and security group.
        new iam.PolicyStatement({
          sid: 'LaunchFromBuilderTemplates',
          actions: ['ec2:RunInstances'],
          resources: [
            ...ARCHES.map((arch) => this.formatArn({ service: 'ec2', resource: 'launch-template', resourceName: this.builderTemplates[arch].launchTemplateId! })),
            this.formatArn({ service: 'ec2', resource: 'subnet', resourceName: builderSubnet.subnetId }),
            this.formatArn({ service: 'ec2', resource: 'security-group', resourceName: builderSg.securityGroupId }),
            ec2Arn('network-interface'),
            this.formatArn({ service: 'ec2', account: '', resource: 'image', resourceName: '*' }),
          ],
        }),
        new iam.PolicyStatement({
          sid: 'TagOnLaunch',
          actions: ['ec2:CreateTags'],
          resources: [ec2Arn('instance'), ec2Arn('volume')],
          conditions: { StringEquals: { 'ec2:CreateAction': 'RunInstances', [`aws:RequestTag/${FLEET_TAG}`]: props.fleetName } },
        }),
        new iam.PolicyStatement({
          sid: 'ManageFleetInstances',
          actions: ['ec2:StartInstances', 'ec2:StopInstances', 'ec2:TerminateInstances'],
          resources: [ec2Arn('instance')],
          conditions: fleetTagged,
        }),
        // Later tags: only the project and stopped-at tags, only on the fleet's own resources.
        new iam.PolicyStatement({
          sid: 'RetagFleetResources',
          actions: ['ec2:CreateTags', 'ec2:DeleteTags'],
          resources: [ec2Arn('instance'), ec2Arn('volume')],
          conditions: { ...fleetTagged, 'ForAllValues:StringEquals': { 'aws:TagKeys': MUTABLE_TAGS } },
        }),
        // DescribeInstances has no resource-level permissions; the fleet filters by its tag.
        new iam.PolicyStatement({ sid: 'DescribeInstances', actions: ['ec2:DescribeInstances'], resources: ['*'] }),
      ],
    });
    gatewayRole.attachInlinePolicy(policy);
    secret.grantRead(gatewayRole);

    // ---- gateways -------------------------------------------------------------------------------
    const gatewayTemplate = new ec2.LaunchTemplate(this, 'GatewayTemplate', {
      machineImage: ec2.MachineImage.fromSsmParameter(amiParameters[gatewayArch]),
      instanceType: new ec2.InstanceType(props.gatewayInstanceType ?? (gatewayArch === 'arm64' ? 'c7g.large' : 'c7i.large')),
      role: gatewayRole,
      securityGroup: gatewaySg,
      requireImdsv2: true,
      httpPutResponseHopLimit: 1,
      userData: ec2.UserData.custom(
        renderGatewayUserData({
          region: this.region,
          accountId: this.account,
          secretArn: secret.secretArn,
          redisUrl,
          fleetName: props.fleetName,
          launchTemplateAmd64: `${this.builderTemplates.amd64.launchTemplateId!}:${this.builderTemplates.amd64.versionNumber}`,
          launchTemplateArm64: `${this.builderTemplates.arm64.launchTemplateId!}:${this.builderTemplates.arm64.versionNumber}`,
          shutdownGraceMs,
          warmPoolSize: props.warmPoolSize ?? 0,
          maxInstancesPerPlatform: props.maxInstancesPerPlatform ?? 20,
          bundle: props.gatewayBundle,
        }),
      ),
    });
    const gateways = new autoscaling.AutoScalingGroup(this, 'Gateways', {
      vpc,
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
      launchTemplate: gatewayTemplate,
      minCapacity: gatewayCount,
      maxCapacity: gatewayCount * 2,
      desiredCapacity: gatewayCount,
      // One replica at a time, never below the count: the others carry builds while one drains.
      updatePolicy: autoscaling.UpdatePolicy.rollingUpdate({ maxBatchSize: 1, minInstancesInService: gatewayCount, pauseTime: Duration.minutes(5) }),
      healthChecks: autoscaling.HealthChecks.withAdditionalChecks({ additionalTypes: [autoscaling.AdditionalHealthCheckType.ELB], gracePeriod: Duration.minutes(5) }),
    });

    this.loadBalancer = new elbv2.NetworkLoadBalancer(this, 'LoadBalancer', {
      vpc,
      internetFacing: true,
      crossZoneEnabled: true,
      vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC },
    });
    const listener = this.loadBalancer.addListener('Tls', { port: 443, protocol: elbv2.Protocol.TCP });
    listener.addTargets('Gateways', {
      port: 443,
      protocol: elbv2.Protocol.TCP,
      targets: [gateways],
      // A draining gateway answers 503 on /readyz: no new connections, existing ones finish.
      healthCheck: { protocol: elbv2.Protocol.HTTPS, path: '/readyz', port: '443', interval: Duration.seconds(10), healthyThresholdCount: 2, unhealthyThresholdCount: 2 },
      deregistrationDelay: Duration.seconds(Math.ceil(shutdownGraceMs / 1000) + 30),
    });

    new CfnOutput(this, 'LoadBalancerDnsName', { value: this.loadBalancer.loadBalancerDnsName, description: `Point ${props.gatewayDomainName} here (CNAME or alias)` });
    new CfnOutput(this, 'GatewaySecretArn', { value: secret.secretArn, description: 'Put the gateway keys here (docs/OPERATIONS.md)' });
    new CfnOutput(this, 'RedisEndpoint', { value: redis.attrPrimaryEndPointAddress });
  }
}
