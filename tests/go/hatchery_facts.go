// Command hatchery_facts computes, with Go's own encoding/json, what Hatchery computes, so
// hatchway's tests can compare against real Go instead of hatchway's reading of it.
//
//	hatchery_facts ids FILE...   one JSON object per file: {"ids": [...]} or {"error": "..."}
//	hatchery_facts names         reads user names (JSON list) on stdin, writes their escapes
//
// The struct definitions below are facts: field names, types and json tags as declared in
// uc-cdis/hatchery hatchery/config.go and hatchery/authz.go, and, for `friends`, in
// k8s.io/api core/v1 types.go (v0.32.1, the version Hatchery pins). They are written out here
// because these machines cannot download Go modules. Two k8s value types are stand-ins:
// IntOrString behaves as k8s.io/apimachinery's does (int or string, as written), while
// Quantity keeps the text it was given (apimachinery canonicalises it; hatchway's tests check
// that canonicalisation separately, and the fixtures use canonical quantities).
package main

import (
	"crypto/md5"
	"encoding/json"
	"fmt"
	"html"
	"os"
)

// ---- hatchery/authz.go -------------------------------------------------------------------

type AuthzConfig struct {
	Version          float32 `json:"version"`
	AuthzVersion_0_1 AuthzVersion_0_1
}

type AuthzVersion_0_1 struct {
	And           []AuthzVersion_0_1 `json:"and"`
	Or            []AuthzVersion_0_1 `json:"or"`
	ResourcePaths []string           `json:"resource_paths"`
	PayModels     []string           `json:"pay_models"`
}

// UnmarshalJSON behaves as Hatchery's: a block needs "version"; only 0.1 reads the rules.
func (a *AuthzConfig) UnmarshalJSON(data []byte) error {
	var obj map[string]interface{}
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		return fmt.Errorf("could not parse 'authz' config: %s", string(data))
	}
	v, ok := obj["version"].(float64)
	if !ok {
		return fmt.Errorf("missing 'version' field in 'authz' config: %s", string(data))
	}
	a.Version = float32(v)
	if a.Version == 0.1 {
		return json.Unmarshal(data, &a.AuthzVersion_0_1)
	}
	return nil
}

// ---- hatchery/config.go ------------------------------------------------------------------

type NextflowGlobalConfig struct {
	S3ObjectsExpirationDays   int    `json:"s3-objects-expiration-days"`
	SampleConfigPublicImage   string `json:"sample-config-public-image"`
	ImageBuilderReaderRoleArn string `json:"imagebuilder-reader-role-arn"`
}

type NextflowConfig struct {
	Enabled                bool     `json:"enabled"`
	JobImageWhitelist      []string `json:"job-image-whitelist"`
	S3BucketWhitelist      []string `json:"s3-bucket-whitelist"`
	ComputeEnvironmentType string   `json:"compute-environment-type"`
	InstanceAmi            string   `json:"instance-ami"`
	InstanceAmiBuilderArn  string   `json:"instance-ami-builder-arn"`
	InstanceType           string   `json:"instance-type"`
	InstanceMinVCpus       int32    `json:"instance-min-vcpus"`
	InstanceMaxVCpus       int32    `json:"instance-max-vcpus"`
}

type LicenseInfo struct {
	Enabled         bool   `json:"enabled"`
	LicenseType     string `json:"license-type"`
	MaxLicenseIds   int    `json:"max-license-ids"`
	G3autoName      string `json:"g3auto-name"`
	G3autoKey       string `json:"g3auto-key"`
	FilePath        string `json:"file-path"`
	WorkspaceFlavor string `json:"workspace-flavor"`
}

type Container struct {
	Name               string            `json:"name"`
	GPU                bool              `json:"gpu"`
	CPULimit           string            `json:"cpu-limit"`
	MemoryLimit        string            `json:"memory-limit"`
	Image              string            `json:"image"`
	PullPolicy         string            `json:"pull_policy"`
	Env                map[string]string `json:"env"`
	TargetPort         int32             `json:"target-port"`
	Args               []string          `json:"args"`
	Command            []string          `json:"command"`
	PathRewrite        string            `json:"path-rewrite"`
	UseTLS             string            `json:"use-tls"`
	ReadyProbe         string            `json:"ready-probe"`
	LifecyclePreStop   []string          `json:"lifecycle-pre-stop"`
	LifecyclePostStart []string          `json:"lifecycle-post-start"`
	UserUID            int64             `json:"user-uid"`
	GroupUID           int64             `json:"group-uid"`
	FSGID              int64             `json:"fs-gid"`
	UserVolumeLocation string            `json:"user-volume-location"`
	Gen3VolumeLocation string            `json:"gen3-volume-location"`
	UseSharedMemory    string            `json:"use-shared-memory"`
	Friends            []K8sContainer    `json:"friends"`
	NextflowConfig     NextflowConfig    `json:"nextflow"`
	License            LicenseInfo       `json:"license"`
	Authz              AuthzConfig       `json:"authz"`
}

type SidecarContainer struct {
	CPULimit         string            `json:"cpu-limit"`
	MemoryLimit      string            `json:"memory-limit"`
	Image            string            `json:"image"`
	Env              map[string]string `json:"env"`
	Args             []string          `json:"args"`
	Command          []string          `json:"command"`
	LifecyclePreStop []string          `json:"lifecycle-pre-stop"`
}

type AppConfigInfo struct {
	AppType string `json:"type"`
	Path    string
	Name    string
}

type PayModel struct {
	Id              string  `json:"bmh_workspace_id"`
	Name            string  `json:"workspace_type"`
	User            string  `json:"user_id"`
	AWSAccountId    string  `json:"account_id"`
	Status          string  `json:"request_status"`
	Local           bool    `json:"local"`
	Region          string  `json:"region"`
	Ecs             bool    `json:"ecs"`
	Subnet          int     `json:"subnet"`
	HardLimit       float32 `json:"hard-limit"`
	SoftLimit       float32 `json:"soft-limit"`
	TotalUsage      float32 `json:"total-usage"`
	CurrentPayModel bool    `json:"current_pay_model"`
}

type Pricing struct {
	Cpu    float64 `json:"cpu"`
	Memory float64 `json:"memory"`
}

type PrismaConfig struct {
	ConsoleAddress string `json:"console-address"`
	ConsoleVersion string `json:"console-version"`
	Enable         bool   `json:"enable"`
}

type HatcheryConfig struct {
	UserNamespace          string               `json:"user-namespace"`
	DefaultPayModel        PayModel             `json:"default-pay-model"`
	SkipNodeSelector       bool                 `json:"skip-node-selector"`
	UseInteralServicesURL  bool                 `json:"use-internal-services-url"`
	PayModels              []PayModel           `json:"pay-models"`
	PayModelsDynamodbTable string               `json:"pay-models-dynamodb-table"`
	PayModelsDynamodbArn   string               `json:"pay-models-dynamodb-arn"`
	LicenseUserMapsTable   string               `json:"license-user-maps-dynamodb-table"`
	LicenseUserMapsGSI     string               `json:"license-user-maps-global-secondary-index"`
	License                LicenseInfo          `json:"license"`
	SubDir                 string               `json:"sub-dir"`
	Containers             []Container          `json:"containers"`
	UserVolumeSize         string               `json:"user-volume-size"`
	Sidecar                SidecarContainer     `json:"sidecar"`
	MoreConfigs            []AppConfigInfo      `json:"more-configs"`
	PrismaConfig           PrismaConfig         `json:"prisma"`
	NextflowGlobalConfig   NextflowGlobalConfig `json:"nextflow-global"`
	Pricing                Pricing              `json:"pricing"`
}

// ---- k8s.io/api core/v1 v0.32.1: Container and the types it reaches -----------------------

type Quantity struct{ text string }

func (q *Quantity) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		s = string(b)
	}
	q.text = s
	return nil
}

func (q Quantity) MarshalJSON() ([]byte, error) {
	if q.text == "" {
		return []byte(`"0"`), nil
	}
	return json.Marshal(q.text)
}

type IntOrString struct {
	IsString bool
	IntVal   int32
	StrVal   string
}

func (i *IntOrString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		i.IsString = true
		return json.Unmarshal(b, &i.StrVal)
	}
	return json.Unmarshal(b, &i.IntVal)
}

func (i IntOrString) MarshalJSON() ([]byte, error) {
	if i.IsString {
		return json.Marshal(i.StrVal)
	}
	return json.Marshal(i.IntVal)
}

type K8sContainer struct {
	Name                     string                  `json:"name"`
	Image                    string                  `json:"image,omitempty"`
	Command                  []string                `json:"command,omitempty"`
	Args                     []string                `json:"args,omitempty"`
	WorkingDir               string                  `json:"workingDir,omitempty"`
	Ports                    []ContainerPort         `json:"ports,omitempty"`
	EnvFrom                  []EnvFromSource         `json:"envFrom,omitempty"`
	Env                      []EnvVar                `json:"env,omitempty"`
	Resources                ResourceRequirements    `json:"resources,omitempty"`
	ResizePolicy             []ContainerResizePolicy `json:"resizePolicy,omitempty"`
	RestartPolicy            *string                 `json:"restartPolicy,omitempty"`
	VolumeMounts             []VolumeMount           `json:"volumeMounts,omitempty"`
	VolumeDevices            []VolumeDevice          `json:"volumeDevices,omitempty"`
	LivenessProbe            *Probe                  `json:"livenessProbe,omitempty"`
	ReadinessProbe           *Probe                  `json:"readinessProbe,omitempty"`
	StartupProbe             *Probe                  `json:"startupProbe,omitempty"`
	Lifecycle                *Lifecycle              `json:"lifecycle,omitempty"`
	TerminationMessagePath   string                  `json:"terminationMessagePath,omitempty"`
	TerminationMessagePolicy string                  `json:"terminationMessagePolicy,omitempty"`
	ImagePullPolicy          string                  `json:"imagePullPolicy,omitempty"`
	SecurityContext          *SecurityContext        `json:"securityContext,omitempty"`
	Stdin                    bool                    `json:"stdin,omitempty"`
	StdinOnce                bool                    `json:"stdinOnce,omitempty"`
	TTY                      bool                    `json:"tty,omitempty"`
}

type ContainerPort struct {
	Name          string `json:"name,omitempty"`
	HostPort      int32  `json:"hostPort,omitempty"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol,omitempty"`
	HostIP        string `json:"hostIP,omitempty"`
}

type LocalObjectReference struct {
	Name string `json:"name,omitempty"`
}

type EnvFromSource struct {
	Prefix       string              `json:"prefix,omitempty"`
	ConfigMapRef *ConfigMapEnvSource `json:"configMapRef,omitempty"`
	SecretRef    *SecretEnvSource    `json:"secretRef,omitempty"`
}

type ConfigMapEnvSource struct {
	LocalObjectReference `json:",inline"`
	Optional             *bool `json:"optional,omitempty"`
}

type SecretEnvSource struct {
	LocalObjectReference `json:",inline"`
	Optional             *bool `json:"optional,omitempty"`
}

type EnvVar struct {
	Name      string        `json:"name"`
	Value     string        `json:"value,omitempty"`
	ValueFrom *EnvVarSource `json:"valueFrom,omitempty"`
}

type EnvVarSource struct {
	FieldRef         *ObjectFieldSelector   `json:"fieldRef,omitempty"`
	ResourceFieldRef *ResourceFieldSelector `json:"resourceFieldRef,omitempty"`
	ConfigMapKeyRef  *ConfigMapKeySelector  `json:"configMapKeyRef,omitempty"`
	SecretKeyRef     *SecretKeySelector     `json:"secretKeyRef,omitempty"`
}

type ObjectFieldSelector struct {
	APIVersion string `json:"apiVersion,omitempty"`
	FieldPath  string `json:"fieldPath"`
}

type ResourceFieldSelector struct {
	ContainerName string   `json:"containerName,omitempty"`
	Resource      string   `json:"resource"`
	Divisor       Quantity `json:"divisor,omitempty"`
}

type ConfigMapKeySelector struct {
	LocalObjectReference `json:",inline"`
	Key                  string `json:"key"`
	Optional             *bool  `json:"optional,omitempty"`
}

type SecretKeySelector struct {
	LocalObjectReference `json:",inline"`
	Key                  string `json:"key"`
	Optional             *bool  `json:"optional,omitempty"`
}

type ResourceRequirements struct {
	Limits   map[string]Quantity `json:"limits,omitempty"`
	Requests map[string]Quantity `json:"requests,omitempty"`
	Claims   []ResourceClaim     `json:"claims,omitempty"`
}

type ResourceClaim struct {
	Name    string `json:"name"`
	Request string `json:"request,omitempty"`
}

type ContainerResizePolicy struct {
	ResourceName  string `json:"resourceName"`
	RestartPolicy string `json:"restartPolicy"`
}

type VolumeMount struct {
	Name              string  `json:"name"`
	ReadOnly          bool    `json:"readOnly,omitempty"`
	RecursiveReadOnly *string `json:"recursiveReadOnly,omitempty"`
	MountPath         string  `json:"mountPath"`
	SubPath           string  `json:"subPath,omitempty"`
	MountPropagation  *string `json:"mountPropagation,omitempty"`
	SubPathExpr       string  `json:"subPathExpr,omitempty"`
}

type VolumeDevice struct {
	Name       string `json:"name"`
	DevicePath string `json:"devicePath"`
}

type Probe struct {
	ProbeHandler                  `json:",inline"`
	InitialDelaySeconds           int32  `json:"initialDelaySeconds,omitempty"`
	TimeoutSeconds                int32  `json:"timeoutSeconds,omitempty"`
	PeriodSeconds                 int32  `json:"periodSeconds,omitempty"`
	SuccessThreshold              int32  `json:"successThreshold,omitempty"`
	FailureThreshold              int32  `json:"failureThreshold,omitempty"`
	TerminationGracePeriodSeconds *int64 `json:"terminationGracePeriodSeconds,omitempty"`
}

type ProbeHandler struct {
	Exec      *ExecAction      `json:"exec,omitempty"`
	HTTPGet   *HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket *TCPSocketAction `json:"tcpSocket,omitempty"`
	GRPC      *GRPCAction      `json:"grpc,omitempty"`
}

type ExecAction struct {
	Command []string `json:"command,omitempty"`
}

type HTTPGetAction struct {
	Path        string       `json:"path,omitempty"`
	Port        IntOrString  `json:"port"`
	Host        string       `json:"host,omitempty"`
	Scheme      string       `json:"scheme,omitempty"`
	HTTPHeaders []HTTPHeader `json:"httpHeaders,omitempty"`
}

type HTTPHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type TCPSocketAction struct {
	Port IntOrString `json:"port"`
	Host string      `json:"host,omitempty"`
}

type GRPCAction struct {
	Port    int32   `json:"port"`
	Service *string `json:"service"`
}

type Lifecycle struct {
	PostStart *LifecycleHandler `json:"postStart,omitempty"`
	PreStop   *LifecycleHandler `json:"preStop,omitempty"`
}

type LifecycleHandler struct {
	Exec      *ExecAction      `json:"exec,omitempty"`
	HTTPGet   *HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket *TCPSocketAction `json:"tcpSocket,omitempty"`
	Sleep     *SleepAction     `json:"sleep,omitempty"`
}

type SleepAction struct {
	Seconds int64 `json:"seconds"`
}

type SecurityContext struct {
	Capabilities             *Capabilities                  `json:"capabilities,omitempty"`
	Privileged               *bool                          `json:"privileged,omitempty"`
	SELinuxOptions           *SELinuxOptions                `json:"seLinuxOptions,omitempty"`
	WindowsOptions           *WindowsSecurityContextOptions `json:"windowsOptions,omitempty"`
	RunAsUser                *int64                         `json:"runAsUser,omitempty"`
	RunAsGroup               *int64                         `json:"runAsGroup,omitempty"`
	RunAsNonRoot             *bool                          `json:"runAsNonRoot,omitempty"`
	ReadOnlyRootFilesystem   *bool                          `json:"readOnlyRootFilesystem,omitempty"`
	AllowPrivilegeEscalation *bool                          `json:"allowPrivilegeEscalation,omitempty"`
	ProcMount                *string                        `json:"procMount,omitempty"`
	SeccompProfile           *SeccompProfile                `json:"seccompProfile,omitempty"`
	AppArmorProfile          *AppArmorProfile               `json:"appArmorProfile,omitempty"`
}

type Capabilities struct {
	Add  []string `json:"add,omitempty"`
	Drop []string `json:"drop,omitempty"`
}

type SELinuxOptions struct {
	User  string `json:"user,omitempty"`
	Role  string `json:"role,omitempty"`
	Type  string `json:"type,omitempty"`
	Level string `json:"level,omitempty"`
}

type WindowsSecurityContextOptions struct {
	GMSACredentialSpecName *string `json:"gmsaCredentialSpecName,omitempty"`
	GMSACredentialSpec     *string `json:"gmsaCredentialSpec,omitempty"`
	RunAsUserName          *string `json:"runAsUserName,omitempty"`
	HostProcess            *bool   `json:"hostProcess,omitempty"`
}

type SeccompProfile struct {
	Type             string  `json:"type"`
	LocalhostProfile *string `json:"localhostProfile,omitempty"`
}

type AppArmorProfile struct {
	Type             string  `json:"type"`
	LocalhostProfile *string `json:"localhostProfile,omitempty"`
}

// ---- hatchery/helpers.go: escapism, behaviour as Hatchery's --------------------------------

func escapism(input string) string {
	const safe = "abcdefghijklmnopqrstuvwxyz0123456789"
	out := ""
	for _, r := range input {
		isSafe := false
		for _, s := range safe {
			if s == r {
				isSafe = true
			}
		}
		if isSafe {
			out += string(r)
		} else {
			out += "-" + fmt.Sprintf("%2x", r)
		}
	}
	return out
}

// ---- modes -------------------------------------------------------------------------------

func ids(path string) map[string]interface{} {
	data, err := os.ReadFile(path)
	if err != nil {
		return map[string]interface{}{"error": err.Error()}
	}
	var cfg HatcheryConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return map[string]interface{}{"error": err.Error()}
	}
	out := []map[string]string{}
	for _, c := range cfg.Containers {
		b, _ := json.Marshal(c)
		out = append(out, map[string]string{"name": c.Name, "id": fmt.Sprintf("%x", md5.Sum(b)),
			"json": string(b)})
	}
	return map[string]interface{}{"ids": out}
}

func main() {
	enc := json.NewEncoder(os.Stdout)
	switch os.Args[1] {
	case "ids":
		for _, path := range os.Args[2:] {
			_ = enc.Encode(ids(path))
		}
	case "names":
		var users []string
		if err := json.NewDecoder(os.Stdin).Decode(&users); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		out := []string{}
		for _, u := range users {
			out = append(out, escapism(html.EscapeString(u)))
		}
		_ = enc.Encode(out)
	}
}
